// The microphone as 16 kHz mono s16le PCM, in chunks of about 100 ms posted to the page.
//
// Runs on the audio thread at the AudioContext's own rate (usually 44.1 or 48 kHz): channels are
// averaged to mono, then each output sample is the mean of the input samples it covers (a box
// low-pass; enough for speech recognition at 16 kHz), for any ratio of rates. A {type: "flush"}
// message posts what is left and answers {type: "flushed"}, so the page sends every sample
// before it commits the stream.

class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const settings = (options && options.processorOptions) || {};
    const targetRate = settings.targetRate || 16000;
    const chunkMs = settings.chunkMs || 100;
    this.ratio = sampleRate / targetRate;
    this.chunk = new Int16Array(Math.max(1, Math.round((targetRate * chunkMs) / 1000)));
    this.filled = 0;
    this.sum = 0;
    this.count = 0;
    this.last = 0;
    this.consumed = 0; // input samples seen
    this.boundary = this.ratio; // where the next output sample ends, in input samples
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "flush") {
        this.post();
        this.port.postMessage({ type: "flushed" });
      }
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const frames = channels[0].length;
      for (let i = 0; i < frames; i++) {
        let value = 0;
        for (let c = 0; c < channels.length; c++) value += channels[c][i];
        this.sum += value / channels.length;
        this.count += 1;
        this.consumed += 1;
        while (this.consumed >= this.boundary) {
          const sample = this.count > 0 ? this.sum / this.count : this.last;
          this.last = sample;
          this.sum = 0;
          this.count = 0;
          this.boundary += this.ratio;
          this.push(sample);
        }
      }
    }
    return true; // keep running while the page holds the node
  }

  push(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.chunk[this.filled++] = Math.round(clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff);
    if (this.filled === this.chunk.length) this.post();
  }

  post() {
    if (this.filled === 0) return;
    const pcm = this.chunk.slice(0, this.filled);
    this.filled = 0;
    this.port.postMessage({ type: "audio", pcm: pcm.buffer }, [pcm.buffer]);
  }
}

registerProcessor("pcm16-downsampler", Pcm16Downsampler);
