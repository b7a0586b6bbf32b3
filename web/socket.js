// The page's WebSocket: where it is (the port /ui-config.json names, on the
// host this page came from) and keeping it open (reconnecting after about
// 0.5 s, doubling up to about 5 s, each delay jittered). Also the bounds the
// pages put on what a server sends them (see docs/ui-and-protocol.md,
// "What the page accepts").

// A text message longer than this is dropped unread: phase4's largest (a
// 64 KiB list) is far below it, and parsing a huge one freezes the page.
const MAX_TEXT_CHARS = 1 << 20;
// Rendered lists and strings are cut to these.
export const MAX_LIST_ITEMS = 500;
export const MAX_STRING_CHARS = 300;

// `s` as a string of at most MAX_STRING_CHARS characters.
export function clip(s, max = MAX_STRING_CHARS) {
  const t = String(s ?? "");
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

// The first MAX_LIST_ITEMS objects of `items` (nothing if it is not a list).
export function capList(items, max = MAX_LIST_ITEMS) {
  return Array.isArray(items) ? items.slice(0, max).filter((x) => x && typeof x === "object") : [];
}

// A handler that throws is reported at most once every 10 s, so one bad
// message (or a flood of them) cannot bury the console or stop the page.
let lastReport = 0, unreported = 0;
export function reportBadMessage(what, err) {
  const now = Date.now();
  if (now - lastReport < 10000) { unreported++; return; }
  console.warn(`phase4: ignored a ${what} the page could not use (${unreported} more since the last report):`, err);
  lastReport = now;
  unreported = 0;
}

// The WebSocket port the server named in the last good ui-config.json. The
// page never guesses one: without it, it waits and asks again, so the token
// only ever goes where the server said.
let learntPort = null;

// The WebSocket URL (with `?token=` when `token`), or null while the page
// has never learnt the port. `fetched` tells whether the server answered;
// `refused` is why the server would turn a page that only watches away
// now (every place open to watchers taken: a string of at most
// MAX_STRING_CHARS), or null.
export async function wsUrl(token) {
  let fetched = false, refused = null;
  try {
    const r = await fetch("ui-config.json", { cache: "no-store" });
    if (r.ok) {
      const cfg = await r.json();
      const port = cfg.ws_port;
      if (Number.isInteger(port) && port > 0 && port < 65536) { learntPort = port; fetched = true; }
      if (fetched && typeof cfg.ws_refused === "string" && cfg.ws_refused) refused = clip(cfg.ws_refused);
    }
  } catch (_) { /* the server is down or busy: keep the port it named last */ }
  if (learntPort === null) return { url: null, fetched, refused };
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return { url: `${proto}://${host || "127.0.0.1"}:${learntPort}/${query}`, fetched, refused };
}

// A connection that stayed up this long was a good one: the next drop
// starts the backoff again from its shortest delay.
const STAYED_UP_MS = 10000;
const jitter = (ms) => Math.round(ms * (0.75 + 0.5 * Math.random()));

// Connect and stay connected: onOpen(ws, handshakeToken) on every
// (re)connection (the token that went in the handshake, or null),
// onClose(refused) when it drops or a try fails (`refused`: the server's
// reason when the try never opened while it said it was full for
// watchers, else null), onMessage(msg) for each JSON object with a
// string `type`, onBinary(ArrayBuffer) for binary frames. A handler that
// throws costs that message only.
// With `token` (a function giving the token to present, or null), the token
// goes in the handshake (`?token=`): the server then knows at once that this
// client may change settings and gives it one of the places kept for that,
// which clients that only watch can never fill. The browser does not say
// why a handshake failed; the one answer the token itself causes is 429
// (the address spent its budget of wrong tokens), which only comes from a
// server that is up. So: when a handshake with the token fails while the
// server answered ui-config.json, the next try goes without it (onOpen then
// offers it with `auth`); every other failure (server down) and every
// failed try without it is followed by one with it again.
export function keepConnected({ onOpen, onClose, onMessage, onBinary, token }) {
  let retryMs = 500;
  let skipToken = false;
  const retry = (fn) => {
    setTimeout(fn, jitter(retryMs));
    retryMs = Math.min(5000, retryMs * 2);
  };
  const open = async () => {
    const t = !skipToken && token ? token() : null;
    const { url, fetched, refused } = await wsUrl(t);
    if (!url) return retry(open);
    let ws;
    try { ws = new WebSocket(url); } catch (e) { reportBadMessage("WebSocket address", e); return retry(open); }
    let openedAt = 0;
    ws.binaryType = "arraybuffer";
    ws.addEventListener("open", () => {
      openedAt = Date.now();
      skipToken = false;
      onOpen(ws, t || null);
    });
    ws.addEventListener("close", () => {
      if (openedAt && Date.now() - openedAt >= STAYED_UP_MS) retryMs = 500;
      skipToken = !openedAt && !!t && fetched;
      // A try with the token may take a place kept for control, so only a
      // try without it is put down to the places for watchers.
      const full = !openedAt && !t ? refused : null;
      try { onClose(full); } catch (e) { reportBadMessage("close", e); }
      retry(open);
    });
    ws.addEventListener("message", (ev) => {
      try {
        if (typeof ev.data !== "string") return onBinary(ev.data);
        if (ev.data.length > MAX_TEXT_CHARS) return reportBadMessage("message", `${ev.data.length} characters`);
        let msg;
        try { msg = JSON.parse(ev.data); } catch (_) { return; }
        if (msg && typeof msg.type === "string") onMessage(msg);
      } catch (e) {
        reportBadMessage("message", e);
      }
    });
  };
  open();
}
