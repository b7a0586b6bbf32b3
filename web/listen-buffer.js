// phase4 listen: the adaptive jitter buffer, shared by both output paths
// (the AudioWorklet, listen-worklet.js, and the ScriptProcessor fallback for
// plain-HTTP pages, listen-paths.js), and the resampler for an output that
// does not run at 48 kHz (a phone may insist on 44.1 kHz).
//
// The buffer holds decoded mono PCM at the output's rate. Playback starts
// once `target` is buffered; an underrun (nothing left to play) raises the
// target by one frame (up to MAX); ten seconds without an underrun, with
// more buffered than needed the whole time, lower it by a quarter frame
// (down to MIN) and drop that much of the oldest audio, so the delay comes
// back down. It keeps the last second it played for `tap` (the tests read
// it). `block`: how many samples the output asks for at once (128 in a
// worklet, 2048 for a ScriptProcessor): the target never goes below one
// block, or every block would underrun.

export class JitterBuffer {
  constructor(rate, block = 128) {
    this.rate = rate;
    this.frame = Math.round(rate / 50);                  // 20 ms
    this.min = Math.max(2 * this.frame, block);          // 40 ms
    this.max = Math.max(25 * this.frame, 2 * block);     // 500 ms
    this.start = Math.max(3 * this.frame, block + this.frame);  // 60 ms
    this.stable = rate * 10;   // samples without an underrun before shrinking
    this.hist = new Float32Array(rate);
    this.histAt = 0;
    this.target = this.start;
    this.underruns = 0;
    this.played = 0;
    this.mean = 0;         // depth averaged over ~0.5 s: what a sample waits
    this.reset();
  }

  reset() {
    this.chunks = [];      // Float32Array queue
    this.offset = 0;       // read position in chunks[0]
    this.depth = 0;        // samples queued
    this.playing = false;
    this.sinceUnderrun = 0;
    this.minDepth = Infinity;  // lowest depth since the last shrink check
  }

  push(pcm) {
    this.chunks.push(pcm);
    this.depth += pcm.length;
    // Never hold more than twice MAX: a stalled output must not grow it.
    while (this.depth > 2 * this.max && this.chunks.length > 1) this.drop(this.chunks[0].length - this.offset);
  }

  drop(n) {
    while (n > 0 && this.chunks.length) {
      const c = this.chunks[0];
      const k = Math.min(n, c.length - this.offset);
      this.offset += k; this.depth -= k; n -= k;
      if (this.offset >= c.length) { this.chunks.shift(); this.offset = 0; }
    }
  }

  // Fill `out` (one output block) with what is due, silence if nothing is.
  process(out) {
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
        this.target = Math.min(this.max, this.target + this.frame);
        this.sinceUnderrun = 0;
        this.minDepth = Infinity;
      }
    }
    out.fill(0, i);
    const h = this.hist.length;
    for (let k = 0; k < n; k++) { this.hist[this.histAt] = out[k]; this.histAt = (this.histAt + 1) % h; }
    this.played += i;
    // A ScriptProcessor takes 43 ms at once, so the depth right now swings
    // by that much: show and count its average.
    this.mean += (this.depth - this.mean) * Math.min(1, n / (this.rate / 2));
    if (this.playing) this.shrink(n);
  }

  shrink(n) {
    this.sinceUnderrun += n;
    this.minDepth = Math.min(this.minDepth, this.depth);
    if (this.sinceUnderrun < this.stable) return;
    const quarter = Math.round(this.frame / 4);
    const spare = this.minDepth - quarter;
    if (this.target > this.min && spare > 0) {
      this.target = Math.max(this.min, this.target - quarter);
      this.drop(Math.min(quarter, spare));
    }
    this.sinceUnderrun = 0;
    this.minDepth = Infinity;
  }

  // The last `n` samples played (at most one second).
  tap(n) {
    const h = this.hist.length;
    n = Math.max(0, Math.min(h, n | 0));
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.hist[(this.histAt - n + i + h) % h];
    return out;
  }

  state() {
    return {
      type: "state", rate: this.rate, depth: this.depth, mean: this.mean, target: this.target,
      underruns: this.underruns, playing: this.playing, played: this.played,
    };
  }
}

// Streaming linear-interpolation resampler (48 kHz Opus to an output that
// runs at another rate). Plenty for "is the box hearing the right feed";
// the images it leaves are far below the monitor's own coding noise.
export class Resampler {
  constructor(from, to) {
    this.step = from / to;
    this.pos = 0;     // next output position, in input samples of the next chunk
    this.last = 0;    // the previous chunk's last sample (index -1)
  }

  process(x) {
    const n = x.length;
    if (!n) return x;
    const count = Math.max(0, Math.ceil((n - 1 - this.pos) / this.step));
    const out = new Float32Array(count);
    let pos = this.pos;
    for (let j = 0; j < count; j++, pos += this.step) {
      const k = Math.floor(pos);
      const f = pos - k;
      const a = k < 0 ? this.last : x[k];
      out[j] = a + f * (x[k + 1] - a);
    }
    this.pos = pos - n;
    this.last = x[n - 1];
    return out;
  }
}
