// phase4 listen: the AudioWorklet side. A small adaptive jitter buffer of
// decoded 48 kHz mono PCM: playback starts once `target` is buffered; an
// underrun (nothing left to play) raises the target by one frame (up to
// MAX); ten seconds without an underrun, with more buffered than needed the
// whole time, lower it by a quarter frame (down to MIN) and drop that much
// of the oldest audio, so the delay comes back down. Reports its state to
// the page every ~250 ms; keeps the last second it played for `tap`
// (the page's level view and the tests read it).

const FRAME = 960;            // 20 ms at 48 kHz
const MIN = 2 * FRAME;        // 40 ms
const MAX = 25 * FRAME;       // 500 ms
const START = 3 * FRAME;      // 60 ms
const STABLE = 48000 * 10;    // samples without an underrun before shrinking
const HIST = 48000;           // what `tap` can return

class ListenBuffer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = [];      // Float32Array queue
    this.offset = 0;       // read position in chunks[0]
    this.depth = 0;        // samples queued
    this.target = START;
    this.playing = false;
    this.underruns = 0;
    this.sinceUnderrun = 0;
    this.minDepth = Infinity;  // lowest depth since the last shrink check
    this.played = 0;
    this.hist = new Float32Array(HIST);
    this.histAt = 0;
    this.nextReport = 0;
    this.port.onmessage = (ev) => this.message(ev.data);
  }

  message(m) {
    if (m.type === "pcm") {
      this.chunks.push(m.pcm);
      this.depth += m.pcm.length;
      // Never hold more than twice MAX: a stalled output must not grow it.
      while (this.depth > 2 * MAX && this.chunks.length > 1) this.drop(this.chunks[0].length - this.offset);
    } else if (m.type === "tap") {
      const n = Math.min(HIST, m.n | 0);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = this.hist[(this.histAt - n + i + HIST) % HIST];
      this.port.postMessage({ type: "tap", id: m.id, pcm: out }, [out.buffer]);
    } else if (m.type === "reset") {
      this.chunks = []; this.offset = 0; this.depth = 0; this.playing = false;
    }
  }

  drop(n) {
    while (n > 0 && this.chunks.length) {
      const c = this.chunks[0];
      const k = Math.min(n, c.length - this.offset);
      this.offset += k; this.depth -= k; n -= k;
      if (this.offset >= c.length) { this.chunks.shift(); this.offset = 0; }
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    if (!this.playing && this.depth >= this.target) this.playing = true;
    let i = 0;
    if (this.playing) {
      while (i < n && this.chunks.length) {
        const c = this.chunks[0];
        const k = Math.min(n - i, c.length - this.offset);
        out.set(c.subarray(this.offset, this.offset + k), i);
        i += k; this.offset += k; this.depth -= k;
        if (this.offset >= c.length) { this.chunks.shift(); this.offset = 0; }
      }
      if (i < n) {
        // Underrun: wait for a bigger cushion.
        this.underruns++;
        this.playing = false;
        this.target = Math.min(MAX, this.target + FRAME);
        this.sinceUnderrun = 0;
        this.minDepth = Infinity;
      }
    }
    out.fill(0, i);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    for (let k = 0; k < n; k++) { this.hist[this.histAt] = out[k]; this.histAt = (this.histAt + 1) % HIST; }
    this.played += i;
    if (this.playing) {
      this.sinceUnderrun += n;
      this.minDepth = Math.min(this.minDepth, this.depth);
      if (this.sinceUnderrun >= STABLE) {
        const spare = this.minDepth - FRAME / 4;
        if (this.target > MIN && spare > 0) {
          const cut = Math.min(FRAME / 4, spare);
          this.target = Math.max(MIN, this.target - FRAME / 4);
          this.drop(cut);
        }
        this.sinceUnderrun = 0;
        this.minDepth = Infinity;
      }
    }
    if (currentFrame >= this.nextReport) {
      this.nextReport = currentFrame + 12000;
      this.port.postMessage({
        type: "state", depth: this.depth, target: this.target, underruns: this.underruns,
        playing: this.playing, played: this.played,
      });
    }
    return true;
  }
}

registerProcessor("phase4-listen", ListenBuffer);
