// phase4 browser UI: a thin renderer. Everything it shows comes from the
// server (meta is the source of truth for settings); it reconnects by itself.

import { SpectrumView } from "./spectrum.js";
import { buildControls } from "./controls.js";
import { keepConnected } from "./socket.js";
import { Listen } from "./listen.js";

const $ = (id) => document.getElementById(id);

// The control token: given once (http://host:8766/#token=..., as
// `phase4 token` prints it, or typed into the Unlock field) and kept in this
// browser. It is taken out of the address bar at once, so it does not end up
// in bookmarks or screenshots.
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
const fromUrl = tokenFromUrl();
if (fromUrl) storeToken(fromUrl.trim());
// A token sent with `auth` and not yet confirmed.
let offered = null;
// The kept token went in this connection's handshake (`?token=`).
let handshakeToken = false;

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

function connect() {
  keepConnected({
    token: storedToken,
    onOpen(socket, withToken) {
      ws = socket;
      const t = storedToken();
      // In the handshake: the greeting's `auth` says whether it held (a
      // wrong one is forgotten there). Else offered in a message.
      handshakeToken = !!t && withToken;
      if (t) { offered = t; if (!withToken) send({ type: "auth", token: t }); }
      $("conn").textContent = "connected";
      $("conn").className = "conn up";
    },
    onClose() {
      $("conn").textContent = "reconnecting…";
      $("conn").className = "conn down";
    },
    onMessage(msg) {
      if (listen.handle(msg)) return;
      const h = handlers[msg.type];
      if (h) h(msg);
    },
    onBinary: (buf) => onFft(buf),
  });
}

function onFft(buf) {
  const view = new DataView(buf);
  if (view.getUint8(0) === 2) return listen.onPacket(buf);
  if (view.getUint8(0) !== 1) return;
  const n = view.getUint16(2, true);
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
    $("spec-mode").textContent = `${m.n_fft_bins} bins · ${m.fft_send_raw_db ? "raw dB" : "post-processed [0, 1]"} · ${m.sr} Hz`;
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
    const rows = [
      ["device", `${st.device.name || "–"} ${st.device.up ? "" : "(down)"}`],
      ["format", `${st.device.rate} Hz · ${st.device.format} · ${st.device.access} · ${st.device.period} frames`],
      ["xruns", st.xruns],
      ["recoveries", `suspends ${st.device.suspends ?? 0} · reopens ${st.device.reopens ?? 0}`],
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
      const dd = document.createElement("dd"); dd.textContent = String(v);
      dl.append(dt, dd);
    }
  },
  devices(d) { devices = d.items || []; renderDevices(); },
  presets(p) { renderPresets(p.items || [], !!p.truncated); },
  auth(a) {
    if (a.authorized && offered) { storeToken(offered); offered = null; }
    // The greeting's answer to a kept token that went in the handshake:
    // one that did not hold is forgotten (an `auth` message would have
    // been answered with an error instead).
    if (handshakeToken) {
      handshakeToken = false;
      if (a.required && !a.authorized && offered) { storeToken(null); offered = null; }
    }
    if (a.authorized || !a.required) listen.reconnected();
    const locked = a.required && !a.authorized;
    if (locked) listen.locked();
    $("auth").textContent = a.required ? (a.authorized ? "control: yes" : "watch only") : "";
    $("unlock").hidden = !locked;
    $("lock").hidden = locked || !storedToken();
    document.querySelectorAll(".controls, #device, #dev-use, #preset-save, #presets").forEach((el) => el.classList.toggle("disabled", locked));
  },
  error(e) {
    if (offered && /^auth:/.test(e.reason)) { storeToken(null); offered = null; }
    toast(e.reason);
  },
};

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
    let label = `${d.index}: ${d.name}`;
    if (d.description) label += ` — ${d.description}`;
    if (!d.available) label += " (unavailable)";
    if (d.probed_signal !== undefined) label += d.probed_signal ? " ● signal" : " ○ silent";
    if (d.name === current) label += " [in use]";
    o.textContent = label;
    sel.append(o);
  }
  const inUse = devices.find((d) => d.name === current);
  if (keep && devices.some((d) => String(d.index) === keep)) sel.value = keep;
  else if (inUse) sel.value = String(inUse.index);
  $("dev-note").textContent = current ? `in use: ${current}` : "";
}

function renderPresets(items, truncated) {
  const ul = $("presets");
  ul.replaceChildren();
  for (const p of items) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = p.name;
    // Local time of the save, "YYYY-MM-DD HH:MM" (the Python server's format).
    name.title = `saved ${p.saved_at}`;
    const load = document.createElement("button");
    load.type = "button";
    load.textContent = "Load";
    load.addEventListener("click", () => send({ type: "load_preset", name: p.name }));
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "Delete";
    del.addEventListener("click", () => { if (confirm(`Delete preset "${p.name}"?`)) send({ type: "delete_preset", name: p.name }); });
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
  offered = t;
  send({ type: "auth", token: t });
});
$("lock").addEventListener("click", () => {
  storeToken(null);
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
