// The page's WebSocket: where it is (the port from /ui-config.json, which
// the HTTP server fills in, on the host this page came from) and keeping it
// open (reconnecting after 0.5 s, doubling up to 5 s).

export async function wsUrl(token) {
  let port = 8765;
  try {
    const r = await fetch("ui-config.json", { cache: "no-store" });
    if (r.ok) port = (await r.json()).ws_port || port;
  } catch (_) { /* keep the default */ }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${proto}://${host || "127.0.0.1"}:${port}/${query}`;
}

// Connect and stay connected: onOpen(ws, withToken) on every
// (re)connection, onClose() when it drops, onMessage(msg) for each JSON
// object with a string `type`, onBinary(ArrayBuffer) for binary frames.
// With `token` (a function giving the kept control token or null), the
// token goes in the handshake (`?token=`): the server then knows at once
// that this client may change settings and gives it one of the places kept
// for that, which clients that only watch can never fill. A connection with
// the token that fails before it opens (the address spent its budget of
// wrong tokens: 429) is tried once without it; `withToken` tells onOpen
// which it was, so it can send `auth` instead.
export function keepConnected({ onOpen, onClose, onMessage, onBinary, token }) {
  let retryMs = 500;
  let skipToken = false;
  const open = async () => {
    const t = !skipToken && token ? token() : null;
    const ws = new WebSocket(await wsUrl(t));
    let opened = false;
    ws.binaryType = "arraybuffer";
    ws.addEventListener("open", () => {
      retryMs = 500;
      opened = true;
      skipToken = false;
      onOpen(ws, !!t);
    });
    ws.addEventListener("close", () => {
      if (!opened && t) skipToken = true;
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
