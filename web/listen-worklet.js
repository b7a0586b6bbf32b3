// phase4 listen: the AudioWorklet side of the WebCodecs path. Plays the
// decoded PCM the page posts through the adaptive jitter buffer of
// listen-buffer.js (shared with the ScriptProcessor fallback), reports its
// state to the page every ~250 ms and answers `tap` with the last samples
// it played (the tests read them).

import { JitterBuffer } from "./listen-buffer.js";

class ListenBuffer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new JitterBuffer(sampleRate, 128);
    this.nextReport = 0;
    this.port.onmessage = (ev) => this.message(ev.data);
  }

  message(m) {
    if (m.type === "pcm") this.buf.push(m.pcm);
    else if (m.type === "reset") this.buf.reset();
    else if (m.type === "tap") {
      const pcm = this.buf.tap(m.n);
      this.port.postMessage({ type: "tap", id: m.id, pcm }, [pcm.buffer]);
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    this.buf.process(out);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (currentFrame >= this.nextReport) {
      this.nextReport = currentFrame + Math.round(sampleRate / 4);
      this.port.postMessage(this.buf.state());
    }
    return true;
  }
}

registerProcessor("phase4-listen", ListenBuffer);
