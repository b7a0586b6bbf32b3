// phase4 listen and recordings: hear what the box hears (the Opus monitor
// stream, decoded and played through an adaptive jitter buffer by one of
// the two paths of listen-paths.js: WebCodecs + AudioWorklet on https:// or
// localhost, WebAssembly libopus + ScriptProcessor on a plain http:// page
// such as a phone on the LAN), and start/stop recordings, save the replay
// buffer, list, download and delete recordings.
//
// Both need the control token (the page's Unlock, or #token= in the
// address) unless the page is opened on the box itself.

import { Resampler } from "./listen-buffer.js";
import { PATHS, newContext, newDecoder, pickPath, scriptOutput, workletOutput } from "./listen-paths.js";
import { capList, clip } from "./socket.js";

const $ = (id) => document.getElementById(id);
const HEADER_MIN = 28;
// `url` (from `recording_download`) as an absolute URL when it is this
// page's origin's /recordings/<name>?ticket=..., else null.
function downloadUrl(url) {
  if (typeof url !== "string" || url.length > 1000) return null;
  let u;
  try { u = new URL(url, location.href); } catch (_) { return null; }
  const ok = u.origin === location.origin && /^\/recordings\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(u.pathname)
    && !u.pathname.includes("..") && !!u.searchParams.get("ticket") && !u.hash && !u.username && !u.password;
  return ok ? u.href : null;
}

function el(tag, props = {}, ...kids) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...kids);
  return e;
}

export class Listen {
  constructor(send, root) {
    this.send = send;
    this.root = root;
    this.ctx = null;
    this.path = null;         // "webcodecs" | "wasm" once chosen
    this.output = null;       // the jitter buffer's output (listen-paths.js)
    this.resampler = null;    // 48 kHz -> the output's rate, when they differ
    this.decoder = null;
    this.quality = "medium";
    this.on = false;
    this.lastSeq = null;
    this.lost = 0;
    this.packets = 0;
    this.offsetNs = null;     // min(arrival - t_send): the server clock's offset
    this.netMs = 0;           // capture -> arrival, ms (smoothed)
    this.build();
    window.phase4Listen = this;
  }

  build() {
    const r = this.root;
    if (!r) return;
    r.replaceChildren(
      el("h2", { textContent: "Listen & record" }),
      el("div", { className: "listen-row" },
        this.btn = el("button", { type: "button", id: "listen-toggle", textContent: "▶ Listen" }),
        this.sel = el("select", { id: "listen-quality", ariaLabel: "quality" },
          ...["low", "medium", "high", "ultra"].map((q) => el("option", { value: q, textContent: `${q} (${{ low: 16, medium: 64, high: 128, ultra: 256 }[q]} kbit/s)`, selected: q === "medium" }))),
        this.stat = el("span", { id: "listen-stats", className: "hint", textContent: "" })),
      this.pathInfo = el("div", { id: "listen-path", className: "hint" }),
      el("div", { className: "listen-row" },
        this.recBtn = el("button", { type: "button", id: "rec-toggle", textContent: "● Record" }),
        el("button", { type: "button", id: "rec-replay", textContent: "Save the last minute", onclick: () => this.send({ type: "save_replay" }) }),
        this.recStat = el("span", { id: "rec-state", className: "hint" })),
      // The outcome of the last save: the state line above is rewritten by
      // every status and listing, which arrive right after it.
      this.recNote = el("div", { id: "rec-note", className: "hint" }),
      this.list = el("ul", { id: "recordings", className: "presets" }));
    this.btn.addEventListener("click", () => (this.on ? this.stop() : this.start()));
    this.sel.addEventListener("change", () => {
      this.quality = this.sel.value;
      if (this.on) this.send({ type: "subscribe_audio", quality: this.quality });
    });
    this.recBtn.addEventListener("click", () => this.send({ type: this.recording ? "stop_recording" : "start_recording" }));
    setInterval(() => this.render(), 500);
  }

  // Runs inside the user's tap: iOS Safari only lets a page make sound
  // from an AudioContext created or resumed there, so both happen before
  // anything is awaited.
  start() {
    if (this.starting) return;
    if (!this.ctx) this.ctx = newContext();
    if (!this.ctx) { this.stat.textContent = "this browser has no Web Audio"; return; }
    const resumed = this.ctx.resume();
    // iOS: play even with the ring/silent switch on silent (Safari 16.4+).
    try { if (navigator.audioSession) navigator.audioSession.type = "playback"; } catch { /* older */ }
    this.btn.textContent = "■ Stop";
    this.starting = this.begin(resumed)
      .catch((e) => { this.stat.textContent = `cannot listen: ${e.message || e}`; this.btn.textContent = "▶ Listen"; })
      .finally(() => { this.starting = null; });
  }

  async begin(resumed) {
    if (!this.path) {
      this.path = await pickPath(this.ctx);
      if (!this.path) throw new Error("this browser has neither WebCodecs nor WebAssembly audio");
      this.output = this.path === "webcodecs" ? await workletOutput(this.ctx) : scriptOutput(this.ctx);
      const rate = this.ctx.sampleRate;
      if (rate !== 48000) this.resampler = new Resampler(48000, rate);
      this.pathInfo.textContent = `playing through ${PATHS[this.path]}`
        + (window.isSecureContext ? "" : " (plain-HTTP page)")
        + ` · output ${(rate / 1000).toFixed(1)} kHz` + (this.resampler ? " (resampled from 48)" : "");
    }
    await resumed;
    await this.newDecoder();
    this.on = true;
    this.lastSeq = null;
    this.send({ type: "subscribe_audio", quality: this.quality });
  }

  stop() {
    if (this.starting) return;
    this.on = false;
    this.send({ type: "unsubscribe_audio" });
    if (this.decoder) this.decoder.close();
    this.decoder = null;
    if (this.output) this.output.reset();
    if (this.ctx) this.ctx.suspend();
    this.btn.textContent = "▶ Listen";
  }

  async newDecoder() {
    if (this.decoder) this.decoder.close();
    this.decoder = null;
    const d = await newDecoder(this.path, (pcm) => this.play(pcm), (why) => {
      this.stat.textContent = `decoder: ${why}`;
      if (this.path === "webcodecs") this.decoder = null;   // a closed AudioDecoder: make a new one
    });
    if (this.on || this.starting) this.decoder = d;
    else d.close();
  }

  play(pcm) {
    if (!this.output) return;
    this.output.push(this.resampler ? this.resampler.process(pcm) : pcm);
  }

  // A binary frame whose first byte is 2: [2][n][header][Opus packet].
  onPacket(buf) {
    if (!this.on || buf.byteLength < 2 + HEADER_MIN) return;
    const v = new DataView(buf);
    const n = v.getUint8(1);
    if (n < HEADER_MIN || buf.byteLength < 2 + n) return;
    const seq = v.getUint32(2 + 4, true);
    const tCap = v.getBigUint64(2 + 8, true);
    const tSend = v.getBigUint64(2 + 16, true);
    const nowNs = BigInt(Math.round(performance.now() * 1e6));
    const off = nowNs - tSend;
    if (this.offsetNs === null || off < this.offsetNs) this.offsetNs = off;
    const net = Number(nowNs - this.offsetNs - tCap) / 1e6;
    this.netMs = this.packets ? 0.9 * this.netMs + 0.1 * net : net;
    if (this.lastSeq !== null) {
      const gap = (seq - this.lastSeq - 1) >>> 0;
      if (gap > 0 && gap < 1e6) this.lost += gap;
    }
    this.lastSeq = seq;
    this.packets++;
    if (!this.decoder) {
      // Still being made, or the AudioDecoder failed: a new one, once.
      if (this.path === "webcodecs" && !this.renewing) this.renewing = this.newDecoder().finally(() => { this.renewing = null; });
      return this.lost++;
    }
    if (this.decoder.pending() > 25) return this.lost++;  // a stuck decoder must not pile up
    this.decoder.decode(new Uint8Array(buf, 2 + n), seq);
  }

  // The last `n` samples the output played (the tests read them).
  tap(n) {
    return this.output ? this.output.tap(n) : Promise.resolve(new Float32Array(0));
  }

  // What the page shows, and what the tests read.
  state() {
    const w = (this.output && this.output.state()) || {};
    const rate = w.rate || 48000;
    const bufMs = 1000 * (w.mean || 0) / rate;
    const outMs = this.ctx ? 1000 * ((this.ctx.outputLatency || 0) + (this.ctx.baseLatency || 0) + (this.output ? this.output.latency : 0)) : 0;
    return {
      on: this.on, path: this.path, secure: window.isSecureContext, rate,
      context: this.ctx ? this.ctx.state : null,
      packets: this.packets, lost: this.lost, underruns: w.underruns || 0,
      buffer_ms: bufMs, target_ms: 1000 * (w.target || 0) / rate, network_ms: this.netMs,
      delay_ms: this.netMs + bufMs + outMs, played: w.played || 0,
    };
  }

  render() {
    if (!this.stat || !this.on) return;
    const s = this.state();
    // iOS may interrupt the audio (a call, another app): a tap resumes it.
    if (s.context && s.context !== "running") { this.stat.textContent = `audio ${s.context}: tap Stop, then Listen`; return; }
    this.stat.textContent = `buffer ${s.buffer_ms.toFixed(0)} ms (target ${s.target_ms.toFixed(0)}) · delay ≈ ${s.delay_ms.toFixed(0)} ms · lost ${s.lost} · underruns ${s.underruns}`;
  }

  // JSON messages of the monitor family.
  handle(msg) {
    switch (msg.type) {
      case "audio_subscribed": this.stat.textContent = `${msg.quality}: ${msg.bitrate / 1000} kbit/s Opus`; return true;
      case "audio_unsubscribed": return true;
      case "recordings": this.renderRecordings(msg); return true;
      case "replay_saved": this.recNote.textContent = clip(`saved ${msg.name} (${msg.seconds.toFixed(1)} s)`); return true;
      case "recording_download": {
        // Followed only to where phase4 serves recordings, on this page's
        // own origin: a server (or anything posing as one) must not send
        // the dashboard elsewhere.
        const url = downloadUrl(msg.url);
        if (!url) { this.recNote.textContent = "ignored a download link that does not point at this server's /recordings/"; return true; }
        const a = el("a", { href: url, download: clip(msg.name, 100) });
        document.body.append(a); a.click(); a.remove();
        return true;
      }
      case "server_status":
        if (msg.monitor) this.renderRecState(msg.monitor.recording);
        return false;
      default: return false;
    }
  }

  renderRecState(st) {
    if (!st || !this.recStat) return;
    this.recording = st.active;
    this.recBtn.textContent = st.active ? "■ Stop recording" : "● Record";
    const mb = (b) => (b / 1048576).toFixed(0);
    this.recStat.textContent = clip((st.active ? `recording ${st.seconds.toFixed(0)} s · ` : "")
      + (st.error ? `stopped: ${st.error} · ` : "")
      + `replay ${st.replay_s.toFixed(0)}/${st.replay_capacity_s.toFixed(0)} s · ${mb(st.used_bytes)} of ${mb(st.quota_bytes)} MiB used · ${mb(st.free_bytes)} MiB free`, 400);
  }

  renderRecordings(msg) {
    this.renderRecState(msg.state);
    const items = capList(msg.items);
    this.list.replaceChildren(...items.map((it) => el("li", {},
      el("span", { textContent: clip(`${it.name} · ${it.seconds.toFixed(1)} s · ${it.bits} bit · ${(it.bytes / 1048576).toFixed(1)} MiB`), title: clip(it.name) }),
      el("button", { type: "button", textContent: "Download", onclick: () => this.send({ type: "download_recording", name: it.name }) }),
      el("button", { type: "button", textContent: "Delete", onclick: () => { if (confirm(`Delete ${clip(it.name)}?`)) this.send({ type: "delete_recording", name: it.name }); } }))));
    if (msg.truncated || items.length < (msg.items || []).length) this.list.append(el("li", { className: "hint", textContent: `only the newest ${items.length} are listed` }));
    if (!items.length && !msg.truncated) this.list.append(el("li", { className: "hint", textContent: "no recordings yet" }));
  }

  // Watch only (no token, or the page was locked): the server lists
  // recordings and sends the recorder's state to token holders only, so
  // what was shown before is dropped.
  locked() {
    if (this.list) this.list.replaceChildren(el("li", { className: "hint", textContent: "recordings need the control token (Unlock)" }));
    if (this.recStat) this.recStat.textContent = "";
  }

  // The WebSocket came back: listen again if we were listening.
  reconnected() {
    this.lastSeq = null;
    this.offsetNs = null;
    if (this.on) this.send({ type: "subscribe_audio", quality: this.quality });
    this.send({ type: "list_recordings" });
  }
}
