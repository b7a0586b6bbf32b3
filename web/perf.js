// The performance view (perf.html): what a VJ or the desk needs to see
// from across a dark room. Watch-only: it sends nothing but the WebSocket
// handshake, so it needs no control token.
//
// Beats flash the big disc: on each `beat` event (the same detection and
// index as OSC /audio/beat) and, should an event be lost, on the snapshot's
// `beat_index` moving on; an index flashes once. The ring fills with the
// beat phase (snapshot `tempo.phase`, advanced at the tempo between
// snapshots). Per-band onsets light their band, from the `onset` events and
// the snapshot counters likewise. The history shows the last 10 s: a
// spectrogram from the FFT frames while the FFT is on, and the three band
// energies with beat lines.

import { clip, keepConnected } from "./socket.js";
import { fillEmptyBins } from "./spectrum.js";

const $ = (id) => document.getElementById(id);
const BANDS = ["low", "mid", "high"];
const COLORS = { low: "#39a0d8", mid: "#4fc280", high: "#e8943a" };
const HISTORY_S = 10;
// Snapshots kept for the energy traces (10 s at up to 240 Hz).
const SNAP_CAP = 2400;
// Spectrogram columns kept (10 s at up to ~190 FFT frames/s).
const SPEC_COLS = 2048;
const EVENT_CAP = 256;

let meta = null;
let lastBeat = null;
const lastOnset = { low: null, mid: null, high: null };
const tempo = { bpm: 0, phase: 0, locked: false, confidence: 0, at: 0 };

// Time-stamped rings (performance.now() at arrival).
class Ring {
  constructor(cap, fields) {
    this.cap = cap; this.n = 0; this.head = 0;
    this.t = new Float64Array(cap);
    this.f = Object.fromEntries(fields.map((k) => [k, new Float32Array(cap)]));
  }
  push(t, vals) {
    this.t[this.head] = t;
    for (const k in vals) this.f[k][this.head] = vals[k];
    this.head = (this.head + 1) % this.cap;
    this.n = Math.min(this.cap, this.n + 1);
  }
  // Oldest to newest: callback(index).
  each(cb) {
    for (let i = 0; i < this.n; i++) cb((this.head - this.n + i + this.cap) % this.cap);
  }
}
const snaps = new Ring(SNAP_CAP, BANDS);
const beats = new Ring(EVENT_CAP, []);
const onsets = Object.fromEntries(BANDS.map((b) => [b, new Ring(EVENT_CAP, [])]));

function flash(el, cls, ms) {
  el.classList.add(cls);
  clearTimeout(el._t);
  el._t = setTimeout(() => el.classList.remove(cls), ms);
}

// Long enough to see, short enough to go dark between beats at 180 BPM.
function flashMs() {
  return tempo.bpm > 0 ? Math.min(150, 0.4 * 60000 / tempo.bpm) : 120;
}

function onBeat(index) {
  lastBeat = index;
  const el = $("p-beat");
  el.dataset.beat = String(index);
  flash(el, "on", flashMs());
  beats.push(performance.now(), {});
}

function onBandOnset(band, count) {
  lastOnset[band] = count;
  flash($(`p-${band}`), "onset", 120);
  onsets[band].push(performance.now(), {});
}

// ---------------------------------------------------------------- spectrogram

const spec = { canvas: document.createElement("canvas"), n: 0, col: 0, cols: 0, lastAt: 0, filled: null, img: null, lut: null };

// Dark blue → magenta → orange → white: readable on black, brightest where loud.
function colorLut() {
  const stops = [[0, 0, 0, 0], [0.25, 20, 20, 90], [0.5, 150, 30, 140], [0.75, 240, 120, 40], [1, 255, 250, 220]];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const u = i / 255;
    let k = 0;
    while (k < stops.length - 2 && u > stops[k + 1][0]) k++;
    const [u0, ...c0] = stops[k], [u1, ...c1] = stops[k + 1];
    const a = (u - u0) / (u1 - u0);
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = c0[c] + (c1[c] - c0[c]) * a;
  }
  return lut;
}

function onFft(buf) {
  if (!meta || buf.byteLength < 4) return;
  const view = new DataView(buf);
  if (view.getUint8(0) !== 1) return;
  const n = view.getUint16(2, true);
  if (n === 0 || buf.byteLength < 4 + 4 * n) return;
  let bins = new Float32Array(buf, 4, n);
  if (spec.n !== n) {
    spec.n = n; spec.col = 0; spec.cols = 0;
    spec.canvas.width = SPEC_COLS; spec.canvas.height = n;
    spec.img = new ImageData(1, n);
  }
  spec.lut = spec.lut || colorLut();
  const raw = meta.fft_send_raw_db;
  if (raw) bins = spec.filled = fillEmptyBins(bins, spec.filled);
  const lo = meta.fft_db_floor, span = Math.max(1e-6, meta.fft_db_ceiling - meta.fft_db_floor);
  const px = spec.img.data;
  for (let j = 0; j < n; j++) {
    let u = raw ? (bins[j] - lo) / span : bins[j];
    u = Number.isFinite(u) ? Math.min(1, Math.max(0, u)) : 0;
    const i = Math.round(u * 255) * 3, row = (n - 1 - j) * 4;  // low bins at the bottom
    px[row] = spec.lut[i]; px[row + 1] = spec.lut[i + 1]; px[row + 2] = spec.lut[i + 2]; px[row + 3] = 255;
  }
  spec.canvas.getContext("2d").putImageData(spec.img, spec.col, 0);
  spec.col = (spec.col + 1) % SPEC_COLS;
  spec.cols = Math.min(SPEC_COLS, spec.cols + 1);
  spec.lastAt = performance.now();
}

// ---------------------------------------------------------------- drawing

const hist = $("p-hist");
const hctx = hist.getContext("2d");

function resize() {
  const r = hist.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  hist.width = Math.max(1, Math.round(r.width * dpr));
  hist.height = Math.max(1, Math.round(r.height * dpr));
}
new ResizeObserver(resize).observe(hist);

function drawSpectrogram(h) {
  const w = hist.width;
  const rate = meta.sr / Math.max(1, meta.fft_hop || 512);
  const want = Math.min(spec.cols, Math.round(HISTORY_S * rate));
  const start = (spec.col - want + SPEC_COLS) % SPEC_COLS;
  const x0 = w - (want / (HISTORY_S * rate)) * w;
  hctx.imageSmoothingEnabled = false;
  // The ring may wrap: draw its two runs side by side.
  const first = Math.min(want, SPEC_COLS - start);
  const scale = (w - x0) / Math.max(1, want);
  hctx.drawImage(spec.canvas, start, 0, first, spec.n, x0, 0, first * scale, h);
  if (first < want) hctx.drawImage(spec.canvas, 0, 0, want - first, spec.n, x0 + first * scale, 0, (want - first) * scale, h);
}

function drawHistory(now) {
  const w = hist.width, h = hist.height;
  const dpr = window.devicePixelRatio || 1;
  hctx.fillStyle = "#07080a";
  hctx.fillRect(0, 0, w, h);
  const xOf = (t) => w - ((now - t) / (HISTORY_S * 1000)) * w;
  const specOn = meta && spec.cols > 0 && now - spec.lastAt < 1000;
  const specH = specOn ? Math.round(h * 0.55) : 0;
  if (specOn) drawSpectrogram(specH);
  $("p-hist-note").textContent = specOn ? "" : "last 10 s · spectrogram when the FFT is on";
  // Band energies, one trace each, filled under the line.
  const top = specH + 4 * dpr, eh = h - top - 2 * dpr;
  for (const b of BANDS) {
    hctx.beginPath();
    let started = false;
    snaps.each((i) => {
      const x = xOf(snaps.t[i]);
      if (x < -4) return;
      const y = top + eh - Math.min(1, Math.max(0, snaps.f[b][i])) * eh;
      if (started) hctx.lineTo(x, y); else { hctx.moveTo(x, y); started = true; }
    });
    hctx.strokeStyle = COLORS[b];
    hctx.lineWidth = 2.5 * dpr;
    hctx.stroke();
  }
  // Onset ticks per band along the bottom, beat lines across everything.
  BANDS.forEach((b, k) => {
    hctx.fillStyle = COLORS[b];
    onsets[b].each((i) => {
      const x = xOf(onsets[b].t[i]);
      if (x >= 0) hctx.fillRect(x - dpr, h - (k + 1) * 6 * dpr, 3 * dpr, 5 * dpr);
    });
  });
  hctx.fillStyle = "rgba(255,255,255,0.75)";
  beats.each((i) => {
    const x = xOf(beats.t[i]);
    if (x >= 0) hctx.fillRect(x - dpr, 0, 2 * dpr, h);
  });
}

function frame() {
  const now = performance.now();
  // Phase ring: the snapshot phase, advanced at the tempo since it came.
  let phase = 0;
  if (tempo.locked && tempo.bpm > 0) phase = (tempo.phase + ((now - tempo.at) / 60000) * tempo.bpm) % 1;
  $("p-ring-arc").setAttribute("stroke-dasharray", `${(phase * 100).toFixed(1)} 100`);
  drawHistory(now);
  requestAnimationFrame(frame);
}

// ---------------------------------------------------------------- messages

const handlers = {
  meta(m) {
    meta = m;
    $("p-device").textContent = m.device && m.device.name ? clip(`${m.device.name} · ${m.sr} Hz`) : "";
  },
  beat(e) {
    if (e.index !== lastBeat) onBeat(e.index);
  },
  onset(e) {
    if (BANDS.includes(e.band) && e.count !== lastOnset[e.band]) onBandOnset(e.band, e.count);
  },
  snapshot(s) {
    const now = performance.now();
    const vals = {};
    for (const b of BANDS) {
      const v = Math.min(1, Math.max(0, +s[b] || 0));
      vals[b] = v;
      $(`p-${b}`).firstElementChild.style.height = `${(v * 100).toFixed(1)}%`;
      const c = s.band_onsets && s.band_onsets[b];
      if (c === undefined) continue;
      // The first snapshot after (re)connecting only sets the baseline;
      // a counter that went back (restart) too.
      if (lastOnset[b] === null || c < lastOnset[b]) lastOnset[b] = c;
      else if (c > lastOnset[b]) onBandOnset(b, c);
    }
    snaps.push(now, vals);
    if (s.beat_index !== undefined) {
      if (lastBeat === null || s.beat_index < lastBeat) lastBeat = s.beat_index;
      else if (s.beat_index > lastBeat) onBeat(s.beat_index);
    }
    if (s.tempo) {
      Object.assign(tempo, { bpm: s.tempo.bpm, phase: s.tempo.phase, locked: !!s.tempo.locked, confidence: s.tempo.confidence, at: now });
      $("p-bpm").textContent = tempo.locked ? tempo.bpm.toFixed(1) : "–––";
      $("p-lock").textContent = tempo.locked ? "LOCKED" : (s.silent ? "SILENT" : "SEARCHING");
      $("p-lock").classList.toggle("locked", tempo.locked);
      document.querySelector(".p-tempo").classList.toggle("locked", tempo.locked);
      document.querySelector(".p-beat-area").classList.toggle("unlocked", !tempo.locked);
      const c = Math.min(1, Math.max(0, +tempo.confidence || 0));
      $("p-conf").textContent = `${Math.round(c * 100)} %`;
      $("p-conf-bar").style.width = `${(c * 100).toFixed(1)}%`;
    }
  },
};

function connect() {
  keepConnected({
    onOpen() {
      lastBeat = null;
      for (const b of BANDS) lastOnset[b] = null;
      $("p-conn").textContent = "live";
      $("p-conn").className = "p-conn up";
    },
    onClose(refused) {
      // Turned away (every place open to watchers taken, or its address's
      // share): say why.
      $("p-conn").textContent = refused ? `refused, retrying… (${refused})` : "reconnecting…";
      $("p-conn").className = "p-conn down";
    },
    onMessage(msg) {
      if (Object.hasOwn(handlers, msg.type)) handlers[msg.type](msg);
    },
    onBinary: onFft,
  });
}

// Full screen on request; and a screen wake lock where the browser offers
// one (only on https or localhost: over plain http on the LAN a phone's
// auto-lock has to be turned off by hand). Taken again when the page comes
// back into view, since the browser drops it when hidden.
let wakeWanted = false;
async function keepAwake() {
  if (!wakeWanted || !("wakeLock" in navigator) || document.visibilityState !== "visible") return;
  try { await navigator.wakeLock.request("screen"); } catch (_) { /* refused: the screen may sleep */ }
}
$("p-full").addEventListener("click", () => {
  wakeWanted = true;
  keepAwake();
  const el = document.documentElement;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else if (el.requestFullscreen) el.requestFullscreen().catch(() => {});
});
document.addEventListener("visibilitychange", keepAwake);

resize();
requestAnimationFrame(frame);
connect();
