// phase4 listen and recordings: hear what the box hears (the Opus monitor
// stream, decoded with WebCodecs' AudioDecoder and played through an
// AudioWorklet jitter buffer, listen-worklet.js), and start/stop recordings,
// save the replay buffer, list, download and delete recordings.
//
// Both need the control token (the page's Unlock) unless the page is opened
// on the box itself. WebCodecs and AudioWorklet exist only in a secure
// context: http://localhost, or https:// (see the README, "Listening").

const $ = (id) => document.getElementById(id);
const HEADER_MIN = 28;
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
    this.node = null;
    this.decoder = null;
    this.quality = "medium";
    this.on = false;
    this.lastSeq = null;
    this.lost = 0;
    this.packets = 0;
    this.offsetNs = null;     // min(arrival - t_send): the server clock's offset
    this.netMs = 0;           // capture -> arrival, ms (smoothed)
    this.wstate = null;       // the worklet's last report
    this.taps = new Map();
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
      el("div", { className: "listen-row" },
        this.recBtn = el("button", { type: "button", id: "rec-toggle", textContent: "● Record" }),
        el("button", { type: "button", id: "rec-replay", textContent: "Save the last minute", onclick: () => this.send({ type: "save_replay" }) }),
        this.recStat = el("span", { id: "rec-state", className: "hint" })),
      this.list = el("ul", { id: "recordings", className: "presets" }));
    this.btn.addEventListener("click", () => (this.on ? this.stop() : this.start()));
    this.sel.addEventListener("change", () => {
      this.quality = this.sel.value;
      if (this.on) this.send({ type: "subscribe_audio", quality: this.quality });
    });
    this.recBtn.addEventListener("click", () => this.send({ type: this.recording ? "stop_recording" : "start_recording" }));
    setInterval(() => this.render(), 500);
  }

  supported() {
    return typeof AudioDecoder === "function" && typeof AudioWorkletNode === "function";
  }

  async start() {
    if (!this.supported()) {
      this.stat.textContent = window.isSecureContext
        ? "this browser has no WebCodecs audio decoder"
        : "listening needs a secure page (https:// or localhost): see the README";
      return;
    }
    const support = await AudioDecoder.isConfigSupported({ codec: "opus", sampleRate: 48000, numberOfChannels: 1 });
    if (!support.supported) { this.stat.textContent = "this browser cannot decode Opus"; return; }
    if (!this.ctx) {
      this.ctx = new AudioContext({ sampleRate: 48000, latencyHint: "interactive" });
      await this.ctx.audioWorklet.addModule("listen-worklet.js");
      this.node = new AudioWorkletNode(this.ctx, "phase4-listen", { numberOfInputs: 0, outputChannelCount: [1] });
      this.node.port.onmessage = (ev) => this.fromWorklet(ev.data);
      this.node.connect(this.ctx.destination);
    }
    await this.ctx.resume();
    this.newDecoder();
    this.on = true;
    this.lastSeq = null;
    this.send({ type: "subscribe_audio", quality: this.quality });
    this.btn.textContent = "■ Stop";
  }

  stop() {
    this.on = false;
    this.send({ type: "unsubscribe_audio" });
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    if (this.node) this.node.port.postMessage({ type: "reset" });
    if (this.ctx) this.ctx.suspend();
    this.btn.textContent = "▶ Listen";
  }

  newDecoder() {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = new AudioDecoder({
      output: (data) => {
        const pcm = new Float32Array(data.numberOfFrames);
        data.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
        data.close();
        if (this.node) this.node.port.postMessage({ type: "pcm", pcm }, [pcm.buffer]);
      },
      error: (e) => { this.stat.textContent = `decoder: ${e.message}`; this.decoder = null; },
    });
    this.decoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: 1 });
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
    if (!this.decoder) this.newDecoder();
    if (this.decoder.decodeQueueSize > 25) return this.lost++;  // a stuck decoder must not pile up
    this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: seq * 20000, data: new Uint8Array(buf, 2 + n) }));
  }

  fromWorklet(m) {
    if (m.type === "state") this.wstate = m;
    else if (m.type === "tap") { const f = this.taps.get(m.id); this.taps.delete(m.id); if (f) f(m.pcm); }
  }

  // The last `n` samples the worklet played (the tests read them).
  tap(n) {
    const id = Math.random();
    return new Promise((resolve) => { this.taps.set(id, resolve); this.node.port.postMessage({ type: "tap", n, id }); });
  }

  // What the page shows, and what the tests read.
  state() {
    const w = this.wstate || {};
    const bufMs = (w.depth || 0) / 48;
    const outMs = this.ctx ? 1000 * ((this.ctx.outputLatency || 0) + (this.ctx.baseLatency || 0)) : 0;
    return {
      on: this.on, packets: this.packets, lost: this.lost, underruns: w.underruns || 0,
      buffer_ms: bufMs, target_ms: (w.target || 0) / 48, network_ms: this.netMs,
      delay_ms: this.netMs + bufMs + outMs, played: w.played || 0,
    };
  }

  render() {
    if (!this.stat || !this.on) return;
    const s = this.state();
    this.stat.textContent = `buffer ${s.buffer_ms.toFixed(0)} ms (target ${s.target_ms.toFixed(0)}) · delay ≈ ${s.delay_ms.toFixed(0)} ms · lost ${s.lost} · underruns ${s.underruns}`;
  }

  // JSON messages of the monitor family.
  handle(msg) {
    switch (msg.type) {
      case "audio_subscribed": this.stat.textContent = `${msg.quality}: ${msg.bitrate / 1000} kbit/s Opus`; return true;
      case "audio_unsubscribed": return true;
      case "recordings": this.renderRecordings(msg); return true;
      case "replay_saved": this.recStat.textContent = `saved ${msg.name} (${msg.seconds.toFixed(1)} s)`; return true;
      case "recording_download": {
        const a = el("a", { href: msg.url, download: msg.name });
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
    this.recStat.textContent = (st.active ? `recording ${st.seconds.toFixed(0)} s · ` : "")
      + (st.error ? `stopped: ${st.error} · ` : "")
      + `replay ${st.replay_s.toFixed(0)}/${st.replay_capacity_s.toFixed(0)} s · ${mb(st.used_bytes)} of ${mb(st.quota_bytes)} MiB used · ${mb(st.free_bytes)} MiB free`;
  }

  renderRecordings(msg) {
    this.renderRecState(msg.state);
    this.list.replaceChildren(...msg.items.map((it) => el("li", {},
      el("span", { textContent: `${it.name} · ${it.seconds.toFixed(1)} s · ${it.bits} bit · ${(it.bytes / 1048576).toFixed(1)} MiB` }),
      el("button", { type: "button", textContent: "Download", onclick: () => this.send({ type: "download_recording", name: it.name }) }),
      el("button", { type: "button", textContent: "Delete", onclick: () => { if (confirm(`Delete ${it.name}?`)) this.send({ type: "delete_recording", name: it.name }); } }))));
    if (!msg.items.length) this.list.append(el("li", { className: "hint", textContent: "no recordings yet" }));
  }

  // The WebSocket came back: listen again if we were listening.
  reconnected() {
    this.lastSeq = null;
    this.offsetNs = null;
    if (this.on) this.send({ type: "subscribe_audio", quality: this.quality });
    this.send({ type: "list_recordings" });
  }
}
