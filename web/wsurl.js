// Where the WebSocket is: the port from /ui-config.json (the HTTP server
// knows the configured one), on the host this page came from.
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
