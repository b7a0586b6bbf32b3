// The page's WebSocket: where it is (the port from /ui-config.json, which
// the HTTP server fills in, on the host this page came from) and keeping it
// open (reconnecting after 0.5 s, doubling up to 5 s).

export async function wsUrl() {
  let port = 8765;
  try {
    const r = await fetch("ui-config.json", { cache: "no-store" });
    if (r.ok) port = (await r.json()).ws_port || port;
  } catch (_) { /* keep the default */ }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  return `${proto}://${host || "127.0.0.1"}:${port}/`;
}

// Connect and stay connected: onOpen(ws) on every (re)connection,
// onClose() when it drops, onMessage(msg) for each JSON object with a
// string `type`, onBinary(ArrayBuffer) for binary frames.
export function keepConnected({ onOpen, onClose, onMessage, onBinary }) {
  let retryMs = 500;
  const open = async () => {
    const ws = new WebSocket(await wsUrl());
    ws.binaryType = "arraybuffer";
    ws.addEventListener("open", () => {
      retryMs = 500;
      onOpen(ws);
    });
    ws.addEventListener("close", () => {
      onClose();
      setTimeout(open, retryMs);
      retryMs = Math.min(5000, retryMs * 2);
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return onBinary(ev.data);
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (msg && typeof msg.type === "string") onMessage(msg);
    });
  };
  open();
}
