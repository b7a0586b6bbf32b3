// The log spectrum view: bins as the server sends them (post-processed
// [0, 1] or raw dB, per meta.fft_send_raw_db), on a log-frequency axis in Hz.
// Log bin j spans [f_min·r^j, f_min·r^(j+1)) with r = (sr/2 / f_min)^(1/N).

const TICKS = [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];
const EMPTY_DB = -1000;

// Raw-dB frames carry EMPTY_DB for log bins no FFT bin falls into (at the
// low end, one FFT bin is wider than several log bins). Those bins lie inside
// a neighbour's FFT bin, so they take the value interpolated between the
// nearest filled bins (the nearest one at either end) instead of drawing as
// gaps between isolated spikes. `out` is reused between frames.
export function fillEmptyBins(bins, out) {
  const n = bins.length;
  if (!out || out.length !== n) out = new Float32Array(n);
  let prev = -1;
  for (let j = 0; j <= n; j++) {
    if (j < n && bins[j] <= EMPTY_DB) continue;
    for (let k = prev + 1; k < j; k++) {
      if (prev < 0 && j >= n) out[k] = EMPTY_DB;
      else if (prev < 0) out[k] = bins[j];
      else if (j >= n) out[k] = bins[prev];
      else out[k] = bins[prev] + (bins[j] - bins[prev]) * (k - prev) / (j - prev);
    }
    if (j < n) out[j] = bins[j];
    prev = j;
  }
  return out;
}

// Axis labels that fit: each [text, x] is drawn left-aligned at x, pulled
// inside the canvas, and dropped when it would touch the one kept before it.
// Returns the kept boxes {text, x0, x1}.
export function layoutLabels(ctx, labels, w, gap) {
  const kept = [];
  let right = -Infinity;
  for (const [text, x] of labels) {
    const tw = ctx.measureText(text).width;
    const x0 = Math.max(0, Math.min(x, w - tw));
    if (x0 < right + gap) continue;
    kept.push({ text, x0, x1: x0 + tw });
    right = x0 + tw;
  }
  return kept;
}

export class SpectrumView {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.bins = null;
    this.meta = null;
    this.dirty = true;
    const ro = new ResizeObserver(() => this.resize());
    ro.observe(canvas);
    this.resize();
    const frame = () => { this.draw(); requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(r.width * dpr));
    this.canvas.height = Math.max(1, Math.round(r.height * dpr));
    this.dirty = true;
  }

  setMeta(meta) { this.meta = meta; this.dirty = true; }

  setBins(bins) { this.bins = bins; this.dirty = true; }

  // x position (0..w) of frequency f.
  xOf(f, w) {
    const m = this.meta;
    const fMax = m.sr / 2;
    return (Math.log(f / m.fft_f_min) / Math.log(fMax / m.fft_f_min)) * w;
  }

  draw() {
    if (!this.dirty || !this.meta) return;
    this.dirty = false;
    const { ctx, canvas } = this;
    const w = canvas.width, h = canvas.height;
    const dpr = window.devicePixelRatio || 1;
    const m = this.meta;
    ctx.fillStyle = "#0c0e10";
    ctx.fillRect(0, 0, w, h);
    const plotH = h - 18 * dpr;

    // Band ranges.
    const colors = { low: "rgba(57,160,216,0.13)", mid: "rgba(79,194,128,0.13)", high: "rgba(232,148,58,0.13)" };
    for (const b of ["low", "mid", "high"]) {
      const e = m.bands[b];
      const x0 = this.xOf(Math.max(e.lo_hz, m.fft_f_min), w), x1 = this.xOf(Math.min(e.hi_hz, m.sr / 2), w);
      ctx.fillStyle = colors[b];
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), plotH);
    }

    // Frequency grid; the unit leads the labels so it never sits on "20k".
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.fillStyle = "#8a9099";
    ctx.strokeStyle = "#23272c";
    ctx.lineWidth = 1;
    const labels = [["Hz", 2 * dpr]];
    for (const f of TICKS) {
      if (f < m.fft_f_min || f > m.sr / 2) continue;
      const x = Math.round(this.xOf(f, w)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, plotH); ctx.stroke();
      labels.push([f >= 1000 ? `${f / 1000}k` : `${f}`, x + 2 * dpr]);
    }
    const kept = layoutLabels(ctx, labels, w, 4 * dpr);
    for (const l of kept) ctx.fillText(l.text, l.x0, h - 4 * dpr);
    // For tests and the curious: where the labels went (canvas pixels).
    canvas.dataset.axisLabels = JSON.stringify(kept);

    let bins = this.bins;
    if (!bins || !bins.length) {
      ctx.fillText(m.fft_enabled ? "waiting for FFT frames…" : "FFT is off", 10 * dpr, 20 * dpr);
      return;
    }
    const raw = m.fft_send_raw_db;
    if (raw) bins = this.filled = fillEmptyBins(bins, this.filled);
    const lo = m.fft_db_floor, hi = m.fft_db_ceiling;
    const yOf = (v) => {
      let u = raw ? (v - lo) / (hi - lo) : v;
      u = Math.min(1, Math.max(0, u));
      return plotH - u * plotH;
    };
    // dB grid in raw mode.
    const dbLabels = [];
    if (raw) {
      for (let db = Math.ceil(lo / 20) * 20; db <= hi; db += 20) {
        const y = Math.round(yOf(db)) + 0.5;
        ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
        dbLabels.push([`${db} dB`, y - 2 * dpr]);
      }
    }
    const n = bins.length;
    const fMax = m.sr / 2;
    const r = Math.pow(fMax / m.fft_f_min, 1 / n);
    const grad = ctx.createLinearGradient(0, plotH, 0, 0);
    grad.addColorStop(0, "#2c5d8a");
    grad.addColorStop(1, "#9fd3ff");
    ctx.fillStyle = grad;
    for (let j = 0; j < n; j++) {
      const v = bins[j];
      if (raw && v <= EMPTY_DB) continue;
      const x0 = this.xOf(m.fft_f_min * Math.pow(r, j), w);
      const x1 = this.xOf(m.fft_f_min * Math.pow(r, j + 1), w);
      const y = yOf(v);
      ctx.fillRect(x0, y, Math.max(1, x1 - x0 - 0.5), plotH - y);
    }
    // dB labels over the bars, so a loud low end does not hide them.
    ctx.fillStyle = "#c8ccd2";
    for (const [text, y] of dbLabels) ctx.fillText(text, 4 * dpr, y);
  }
}
