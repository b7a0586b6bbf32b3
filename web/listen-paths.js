// phase4 listen: the two ways to turn the Opus monitor stream into sound.
//
//   "webcodecs": WebCodecs' AudioDecoder -> AudioWorklet. Both exist only
//                in a secure context (https://, or http://localhost).
//   "wasm":      libopus compiled to WebAssembly (the vendored opus-decoder,
//                web/vendor/) -> ScriptProcessorNode. Both work on a plain
//                http:// page, which is what a phone on the LAN opens.
//
// Chosen by feature detection (pickPath). Either way the decoded 48 kHz
// PCM goes through the same jitter buffer (listen-buffer.js), resampled
// first when the output does not run at 48 kHz.

import { JitterBuffer } from "./listen-buffer.js";

const OPUS = { codec: "opus", sampleRate: 48000, numberOfChannels: 1 };
const SCRIPT_BLOCK = 2048;   // ~43 ms: large enough for a busy phone's main thread

export const PATHS = {
  webcodecs: "WebCodecs + AudioWorklet",
  wasm: "WebAssembly libopus + ScriptProcessor",
};

// An AudioContext at 48 kHz if the browser allows it (iOS Safari before
// 14.5 knows only webkitAudioContext and no options). Must be called inside
// the user's tap.
export function newContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  try {
    return new Ctx({ sampleRate: 48000, latencyHint: "interactive" });
  } catch {
    return new Ctx();
  }
}

// "webcodecs" where the page may use WebCodecs and it decodes Opus; else
// "wasm" where WebAssembly and a ScriptProcessor exist; else null.
export async function pickPath(ctx) {
  if (window.isSecureContext && typeof AudioDecoder === "function"
      && typeof AudioWorkletNode === "function" && ctx.audioWorklet) {
    try {
      if ((await AudioDecoder.isConfigSupported(OPUS)).supported) return "webcodecs";
    } catch { /* fall through */ }
  }
  if (typeof WebAssembly === "object" && typeof ctx.createScriptProcessor === "function") return "wasm";
  return null;
}

// A decoder for `path`: decode(bytes, seq) hands 48 kHz mono Float32Arrays
// to onPcm; pending() is how many packets wait; close() frees it.
export async function newDecoder(path, onPcm, onError) {
  if (path === "webcodecs") {
    const d = new AudioDecoder({
      output: (data) => {
        const pcm = new Float32Array(data.numberOfFrames);
        data.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
        data.close();
        onPcm(pcm);
      },
      error: (e) => onError(e.message),
    });
    d.configure(OPUS);
    return {
      decode: (bytes, seq) => d.decode(new EncodedAudioChunk({ type: "key", timestamp: seq * 20000, data: bytes })),
      pending: () => d.decodeQueueSize,
      close: () => { if (d.state !== "closed") d.close(); },
    };
  }
  const { OpusDecoder } = await loadWasmOpus();
  const d = new OpusDecoder({ channels: 1, streamCount: 1, coupledStreamCount: 0, channelMappingTable: [0], sampleRate: 48000 });
  // A page that may not compile WebAssembly (a proxy's stricter CSP) never
  // gets ready: say so instead of waiting for ever.
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("the WebAssembly Opus decoder did not start (does a Content-Security-Policy forbid WebAssembly?)")), 10000); });
  try { await Promise.race([d.ready, late]); } finally { clearTimeout(timer); }
  let errors = 0;
  return {
    decode: (bytes) => {
      const r = d.decodeFrame(bytes);
      if (r.errors.length && errors++ < 3) onError(r.errors[0].message);
      if (r.samplesDecoded) onPcm(r.channelData[0]);
    },
    pending: () => 0,
    close: () => d.free(),
  };
}

let wasmOpus = null;
// The vendored UMD build registers itself as globalThis["opus-decoder"];
// loaded only when the fallback is needed (88 KB).
function loadWasmOpus() {
  if (!wasmOpus) wasmOpus = import("./vendor/opus-decoder.min.js").then(() => {
    const m = globalThis["opus-decoder"];
    if (!m || typeof m.OpusDecoder !== "function") throw new Error("the WebAssembly Opus decoder did not load");
    return m;
  });
  return wasmOpus;
}

// The WebCodecs path's output: the jitter buffer runs in the worklet.
export async function workletOutput(ctx) {
  await ctx.audioWorklet.addModule("listen-worklet.js");
  const node = new AudioWorkletNode(ctx, "phase4-listen", { numberOfInputs: 0, outputChannelCount: [1] });
  const taps = new Map();
  let last = {};
  node.port.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === "state") last = m;
    else if (m.type === "tap") { const f = taps.get(m.id); taps.delete(m.id); if (f) f(m.pcm); }
  };
  node.connect(ctx.destination);
  return {
    latency: 0,
    push: (pcm) => node.port.postMessage({ type: "pcm", pcm }, [pcm.buffer]),
    reset: () => node.port.postMessage({ type: "reset" }),
    state: () => last,
    tap: (n) => new Promise((resolve) => {
      const id = Math.random();
      taps.set(id, resolve);
      node.port.postMessage({ type: "tap", n, id });
    }),
  };
}

// The fallback output: the same jitter buffer on the main thread, pulled
// by a ScriptProcessorNode (deprecated, but the one audio callback that
// plain-HTTP pages get on Chrome, Firefox and iOS Safari).
export function scriptOutput(ctx) {
  const buf = new JitterBuffer(ctx.sampleRate, SCRIPT_BLOCK);
  // One input channel: old WebKit never calls a processor without one.
  const node = ctx.createScriptProcessor(SCRIPT_BLOCK, 1, 1);
  node.onaudioprocess = (ev) => buf.process(ev.outputBuffer.getChannelData(0));
  node.connect(ctx.destination);
  return {
    node,  // kept referenced: some browsers collect an unreferenced processor
    latency: SCRIPT_BLOCK / ctx.sampleRate,   // it plays one block behind
    push: (pcm) => buf.push(pcm),
    reset: () => buf.reset(),
    state: () => buf.state(),
    tap: async (n) => buf.tap(n),
  };
}
