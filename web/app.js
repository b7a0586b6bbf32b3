// phase4 browser UI: a thin renderer. Everything it shows comes from the
// server (meta is the source of truth for settings); it reconnects by itself.

import { SpectrumView } from "./spectrum.js";
import { buildControls } from "./controls.js";
import { capList, clip, keepConnected } from "./socket.js";
import { Listen } from "./listen.js";

const $ = (id) => document.getElementById(id);

// The control token: given once (http://host:8766/#token=..., as
// `phase4 token` prints it, or typed into the Unlock field) and kept in this
// browser. It is taken out of the address bar at once (not out of the
// browser's history: see docs/ui-and-protocol.md). A token given here is
// only a candidate: it is kept (over the one kept before) only once the
// server answered an `auth` message carrying it with authorized:true, and
// a kept token is forgotten only on a definite "wrong token" verdict, never
// because the server was busy or rate-limiting this address.
const TOKEN_KEY = "phase4-control-token";
function tokenFromUrl() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const t = hash.get("token") || query.get("token");
  if (t !== null) {
    query.delete("token");
    hash.delete("token");
    const q = query.toString(), h = hash.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + (h ? `#${h}` : ""));
  }
  return t;
}
function storedToken() {
  try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}
function storeToken(t) {
  try { if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY); } catch (_) { /* private mode */ }
}
// The token from the link or the Unlock field, not yet confirmed.
let candidate = (tokenFromUrl() || "").trim() || null;
// The token the handshake presents: the kept one, else the candidate (the
// candidate then needs the place kept for token holders, with nothing else
// to get it).
const presentedToken = () => storedToken() || candidate;

// This connection's token exchange: the token its handshake carried, whether
// the greeting's `auth` came, tokens to offer with `auth` messages (one at a
// time: `offer` waits for its answer) and how many of those failed.
let conn = null;
const verdict = (reason) => (/^auth: wrong token/.test(reason) ? "wrong" : /^auth:/.test(reason) ? "later" : null);

// The greeting's `auth` came: a handshake token it refused was checked and
// is wrong (a kept one is forgotten, a candidate dropped); then offer with
// `auth` what is not yet in force or not yet confirmed.
function afterGreeting(a) {
  const hs = conn.hs;
  if (hs && a.required && !a.authorized) dropToken(hs);
  const kept = storedToken();
  if (!a.required) return;
  if (kept && !a.authorized) conn.queue.push(kept);
  if (candidate && candidate !== kept) conn.queue.push(candidate);
  offerNext();
}
function offerNext() {
  if (!conn || conn.offer || !conn.queue.length || conn.socket.readyState !== WebSocket.OPEN) return;
  conn.offer = conn.queue.shift();
  conn.socket.send(JSON.stringify({ type: "auth", token: conn.offer }));
}
// A definite "wrong token" for `t`.
function dropToken(t) {
  if (t === storedToken()) { storeToken(null); toast("the kept control token was refused: forgotten (Unlock to give it again)"); }
  if (t === candidate) { candidate = null; toast("the control token given was refused (not kept)"); }
}
// The answer to the `auth` message in flight, from `auth` or `error`.
function offerAnswered(authorized, reason) {
  const t = conn.offer;
  conn.offer = null;
  if (authorized) {
    conn.waiting = false;
    if (t === candidate) { storeToken(t); candidate = null; }
    return offerNext();
  }
  conn.failures++;
  if (verdict(reason) === "wrong") { dropToken(t); return offerNext(); }
  // Not checked (the address spent its budget of wrong tokens, perhaps on a
  // neighbour's guesses): keep it and try again once the server says it
  // checks the next. A third failure would close the connection, so the
  // second wait ends in a new connection (its handshake presents it).
  conn.queue.unshift(t);
  conn.waiting = true;
  const said = /in (\d+(?:\.\d+)?) s/.exec(reason);
  const s = Math.min(60, Math.max(2, said ? +said[1] : 5));
  const c = conn;
  c.timer = setTimeout(() => {
    if (conn !== c) return;
    if (c.failures >= 2) c.socket.close();
    else offerNext();
  }, s * 1000 * (1 + 0.5 * Math.random()));
}

let ws = null;
let meta = null;
let devices = [];
const spectrum = new SpectrumView($("spectrum"));
const controls = buildControls(send);
const listen = new Listen(send, $("listen-card"));

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

function flash(el, cls = "on", ms = 120) {
  el.classList.add(cls);
  clearTimeout(el._t);
  el._t = setTimeout(() => el.classList.remove(cls), ms);
}

// The last reason the server gave for turning this page away (toasted once).
let lastRefused = null;

function connect() {
  keepConnected({
    token: presentedToken,
    onOpen(socket, hs) {
      ws = socket;
      conn = { socket, hs, auth: null, queue: [], offer: null, failures: 0, waiting: false, timer: null };
      $("conn").textContent = "connected";
      $("conn").title = "WebSocket connection";
      $("conn").className = "conn up";
      lastRefused = null;
    },
    onClose(refused) {
      if (conn) clearTimeout(conn.timer);
      conn = null;
      // Turned away (every place open to watchers taken, or its address's
      // share): say so and why, not only "reconnecting".
      $("conn").textContent = refused ? "refused, retrying…" : "reconnecting…";
      $("conn").title = refused ? `phase4 refused this page: ${refused}` : "WebSocket connection";
      $("conn").className = "conn down";
      if (refused && refused !== lastRefused) {
        // The token helps only against the watchers' share (review aj AJ8).
        const hint = refused.includes("without the token")
          ? " The control token (Unlock) gets one of the places kept for control."
          : "";
        toast(`phase4 refused this page: ${refused}.${hint}`);
      }
      lastRefused = refused;
      renderAuth();
    },
    onMessage(msg) {
      if (listen.handle(msg)) return;
      if (Object.hasOwn(handlers, msg.type)) handlers[msg.type](msg);
    },
    onBinary: (buf) => onFft(buf),
  });
}

// A binary frame: [1][0][n: u16][n f32] (spectrum) or a monitor packet.
// One whose length does not match its header is dropped.
function onFft(buf) {
  if (!(buf instanceof ArrayBuffer) || buf.byteLength < 4) return;
  const view = new DataView(buf);
  if (view.getUint8(0) === 2) return listen.onPacket(buf);
  if (view.getUint8(0) !== 1) return;
  const n = view.getUint16(2, true);
  if (n === 0 || buf.byteLength < 4 + 4 * n) return;
  spectrum.setBins(new Float32Array(buf, 4, n));
}

const bandOnsets = { low: 0, mid: 0, high: 0 };
let beatIndex = 0, onsetCount = 0;

const handlers = {
  meta(m) {
    meta = m;
    window.phase4Meta = m;
    spectrum.setMeta(m);
    controls.update(m);
    $("spec-mode").textContent = clip(`${m.n_fft_bins} bins · ${m.fft_send_raw_db ? "raw dB" : "post-processed [0, 1]"} · ${m.sr} Hz`, 80);
    renderDevices();
  },
  snapshot(s) {
    for (const b of ["low", "mid", "high"]) {
      $(`m-${b}`).querySelector(".bar").style.height = `${Math.min(100, Math.max(0, s[b] * 100))}%`;
      if (s.band_onsets && s.band_onsets[b] !== bandOnsets[b]) {
        bandOnsets[b] = s.band_onsets[b];
        flash($(`m-${b}`), "flash");
      }
    }
    if (s.level) {
      const pct = (db) => Math.min(100, Math.max(0, (db + 60) / 60 * 100));
      $("m-level").querySelector(".bar").style.height = `${pct(s.level.rms_dbfs)}%`;
      $("m-level").querySelector(".peak").style.bottom = `${pct(s.level.peak_dbfs)}%`;
      $("r-level").textContent = `${s.level.rms_dbfs.toFixed(1)} / ${s.level.peak_dbfs.toFixed(1)} dBFS`;
    }
    if (s.tempo) $("r-tempo").textContent = s.tempo.locked ? `${s.tempo.bpm.toFixed(1)} BPM (${(s.tempo.confidence * 100).toFixed(0)} %)` : "not locked";
    if (s.beat_index !== undefined && s.beat_index !== beatIndex) { beatIndex = s.beat_index; flash($("beat")); }
    if (s.onset_count !== undefined && s.onset_count !== onsetCount) { onsetCount = s.onset_count; flash($("onset")); }
    if (s.band_onsets) $("r-onsets").textContent = `${s.onset_count} (L ${s.band_onsets.low} M ${s.band_onsets.mid} H ${s.band_onsets.high})`;
    if (s.spectral) $("r-centroid").textContent = `${s.spectral.centroid_hz.toFixed(0)} Hz`;
    $("r-silent").textContent = s.silent ? "yes" : "no";
  },
  beat() { flash($("beat")); },
  onset(e) { if (e.band === "broadband") flash($("onset")); },
  server_status(st) {
    const dev = st.device || {};
    const rows = [
      ["device", `${dev.name || "–"} ${dev.up ? "" : "(down)"}`],
      ["format", `${dev.rate} Hz · ${dev.format} · ${dev.access} · ${dev.period} frames`],
      ["xruns", st.xruns],
      ["recoveries", `suspends ${dev.suspends ?? 0} · reopens ${dev.reopens ?? 0}`],
      ["drops", `bands ${st.ring_drops.bands} · spectrum ${st.ring_drops.spectrum} · frames ${st.frame_drops} · ws ${st.ws_drops}`],
      ["latency", `p50 ${st.latency_ms.p50.toFixed(2)} · p95 ${st.latency_ms.p95.toFixed(2)} · p99 ${st.latency_ms.p99.toFixed(2)} ms`],
      ["CPU", `${st.process_cpu_pct.toFixed(1)} % (${Object.entries(st.cpu_pct).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")})`],
      ["real-time", `capture ${st.realtime.capture} · workers ${st.realtime.workers} · mlock ${st.realtime.mlock}${st.realtime.cpu == null ? "" : ` · CPU ${st.realtime.cpu}`}`],
      ["clients", st.clients],
      ["OSC", `${st.osc_sent} sent · ${st.osc_failed} failed`],
      ...rigRows(st.rig),
    ];
    const dl = $("status");
    dl.replaceChildren();
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = clip(v);
      dl.append(dt, dd);
    }
  },
  devices(d) { devices = capList(d.items); renderDevices(); },
  presets(p) { renderPresets(capList(p.items), !!p.truncated || (Array.isArray(p.items) && p.items.length > capList(p.items).length)); },
  auth(a) {
    if (!conn) return;
    const was = !!(conn.auth && conn.auth.authorized);
    if (!conn.auth) {
      conn.auth = { required: !!a.required, authorized: !!a.authorized };
      afterGreeting(a);
    } else {
      if (a.authorized) conn.auth.authorized = true;
      if (conn.offer) offerAnswered(!!a.authorized, "");
    }
    if (!was && (conn.auth.authorized || !conn.auth.required)) listen.reconnected();
    renderAuth();
  },
  error(e) {
    const reason = clip(e.reason);
    if (conn && conn.offer && verdict(reason)) { offerAnswered(false, reason); renderAuth(); }
    toast(reason);
  },
};

// The header's control state, the Unlock form and Lock. Nothing is claimed
// while disconnected or before the greeting's `auth`.
function renderAuth() {
  const a = conn && conn.auth;
  const locked = !!a && a.required && !a.authorized;
  $("auth").textContent = !a || !a.required ? "" : a.authorized ? "control: yes"
    : conn.waiting ? "control: rate-limited, retrying…" : "watch only";
  if (!a) return;
  if (locked) listen.locked();
  $("unlock").hidden = !locked;
  $("lock").hidden = locked || !storedToken();
  document.querySelectorAll(".controls, #device, #dev-use, #preset-save, #presets").forEach((el) => el.classList.toggle("disabled", locked));
}

// The rig outputs that are on (server_status.rig; absent when none is).
function rigRows(r) {
  if (!r) return [];
  const rows = [];
  if (r.discovery) rows.push(["mDNS", r.discovery]);
  if (r.oscquery) {
    let q = `${r.oscquery.clients} listening · ${r.oscquery.requests} requests`;
    if (r.oscquery.input_ok !== null && r.oscquery.input_ok !== undefined) q += ` · OSC in ${r.oscquery.input_ok} ok, ${r.oscquery.input_refused} refused`;
    rows.push(["OSCQuery", q]);
  }
  if (r.link) rows.push(["Link feed", r.link.failed > r.link.sent ? `phase4-link not running (${r.link.failed} refused)` : `${r.link.sent} sent · ${r.link.failed} refused`]);
  if (r.midi) rows.push(["MIDI clock", `${r.midi.state} · ${r.midi.pulses} pulses · ${r.midi.subscribers} connected`]);
  if (r.wled) rows.push(["WLED", `${r.wled.sent} sent · ${r.wled.failed} failed`]);
  return rows;
}

function renderDevices() {
  const sel = $("device");
  const current = meta && meta.device ? meta.device.name : "";
  const keep = sel.value;
  sel.replaceChildren();
  for (const d of devices) {
    const o = document.createElement("option");
    o.value = String(d.index);
    let label = `${clip(d.index, 10)}: ${clip(d.name)}`;
    if (d.description) label += ` — ${clip(d.description)}`;
    if (!d.available) label += " (unavailable)";
    if (d.probed_signal !== undefined) label += d.probed_signal ? " ● signal" : " ○ silent";
    if (d.name === current) label += " [in use]";
    o.textContent = label;
    sel.append(o);
  }
  const inUse = devices.find((d) => d.name === current);
  if (keep && devices.some((d) => String(d.index) === keep)) sel.value = keep;
  else if (inUse) sel.value = String(inUse.index);
  $("dev-note").textContent = current ? `in use: ${clip(current)}` : "";
}

function renderPresets(items, truncated) {
  const ul = $("presets");
  ul.replaceChildren();
  for (const p of items) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = clip(p.name);
    // Local time of the save, "YYYY-MM-DD HH:MM" (the Python server's format).
    name.title = `saved ${clip(p.saved_at, 40)}`;
    const load = document.createElement("button");
    load.type = "button";
    load.textContent = "Load";
    load.addEventListener("click", () => send({ type: "load_preset", name: p.name }));
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "Delete";
    del.addEventListener("click", () => { if (confirm(`Delete preset "${clip(p.name)}"?`)) send({ type: "delete_preset", name: p.name }); });
    li.append(name, load, del);
    ul.append(li);
  }
  if (truncated) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "not every preset is listed (see the service log)";
    ul.append(li);
  }
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "no presets yet";
    ul.append(li);
  }
}

$("unlock").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  if (!t) return;
  $("token").value = "";
  candidate = t;
  if (conn && conn.auth) {
    conn.queue = conn.queue.filter((q) => q !== t);
    conn.queue.push(t);
    offerNext();
  }
});
$("lock").addEventListener("click", () => {
  storeToken(null);
  candidate = null;
  if (ws) ws.close();  // reconnects watch-only
});
$("dev-refresh").addEventListener("click", () => send({ type: "list_devices" }));
$("dev-probe").addEventListener("click", () => { $("dev-note").textContent = "probing…"; send({ type: "list_devices", probe: true }); });
$("dev-use").addEventListener("click", () => {
  const i = +$("device").value;
  if (Number.isFinite(i)) send({ type: "set_device", index: i });
});
$("preset-save").addEventListener("click", () => {
  const name = $("preset-name").value.trim();
  if (!/^[A-Za-z0-9_\- ]{1,64}$/.test(name)) return toast("preset names: 1-64 letters, digits, _ - or spaces");
  send({ type: "save_preset", name });
});

connect();
