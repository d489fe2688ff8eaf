// The live-captions page: microphone -> 16 kHz PCM over the gateway's realtime WebSocket, and
// file uploads to POST /v1/audio/transcriptions. No build step, no third-party code.
//
// The token is typed once and kept in sessionStorage (this tab only). It goes out as
// `Authorization: Bearer` on fetch and, since browsers cannot set WebSocket headers, as the
// `openai-insecure-api-key.<token>` subprotocol (OpenAI's browser convention); never in a URL.

const TOKEN_KEY = "parakeet.token";
const SAMPLE_RATE = 16000;
const CHUNK_MS = 100;
const MODEL = "parakeet";
const DOWNLOAD_EXTENSIONS = { srt: "srt", vtt: "vtt", text: "txt" };

const $ = (id) => document.getElementById(id);

// ---- shared: token, errors, rendering ----------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function clock(seconds) {
  const total = Math.max(0, Number(seconds) || 0);
  const minutes = Math.floor(total / 60);
  const rest = (total - minutes * 60).toFixed(1).padStart(4, "0");
  return `${String(minutes).padStart(2, "0")}:${rest}`;
}

function speakerClass(label) {
  const match = /(\d+)\s*$/.exec(label || "");
  return match ? `speaker-${Number(match[1]) % 8}` : "";
}

// One transcript line: time range, speaker (coloured), text.
function line(start, end, speaker, text) {
  const item = document.createElement("li");
  const cls = speakerClass(speaker);
  if (cls) item.classList.add(cls);
  if (speaker) item.dataset.speaker = speaker;
  item.dataset.start = String(start);
  item.dataset.end = String(end);
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${clock(start)}–${clock(end)}`;
  const who = document.createElement("span");
  who.className = "speaker";
  who.textContent = speaker || "";
  const words = document.createElement("span");
  words.className = "text";
  words.textContent = text;
  item.append(time, who, words);
  return item;
}

// The gateway's error body ({"error": {"message", "reason", ...}}) as one sentence for a person.
async function responseError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = `${body.error.message} (${body.error.reason || body.error.code || response.status})`;
    }
  } catch {
    // not JSON: the status line is all there is
  }
  return message;
}

function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

// ---- token ---------------------------------------------------------------------------------------

function setUpToken() {
  const input = $("token");
  input.value = token();
  const state = () => {
    $("token-state").textContent = token() ? "token saved in this tab" : "no token (kept in this tab only)";
  };
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    state();
  });
  state();
}

// ---- live ------------------------------------------------------------------------------------------

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function realtimeUrl() {
  const url = new URL("v1/realtime", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("intent", "transcription");
  return url.href;
}

// The options both modes share: speakers or not, and at most how many ("" lets the server decide).
function speakerOptions() {
  const diarize = $("diarize").checked;
  const maxSpeakers = $("max-speakers").value.trim();
  return diarize && maxSpeakers ? { diarize, max_speakers: Number(maxSpeakers) } : { diarize };
}

function sessionUpdate() {
  const session = {
    input_audio_format: "pcm16",
    input_audio_sample_rate: SAMPLE_RATE,
    input_audio_transcription: { model: MODEL, language: "en" },
    turn_detection: { type: "server_vad" },
    interim_results: true,
    ...speakerOptions(),
  };
  return { type: "transcription_session.update", session };
}

class LiveSession {
  constructor() {
    this.socket = null;
    this.media = null;
    this.context = null;
    this.node = null;
    this.source = null;
    this.pending = [];
    this.interims = new Map();
    this.finished = false;
    this.committed = false; // after the commit, nothing more is sent
  }

  status(text) {
    $("live-status").textContent = text;
  }

  async start() {
    showError("");
    $("finals").replaceChildren();
    $("interim").textContent = "";
    this.status("asking for the microphone…");
    this.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule(new URL("static/audio-worklet.js", document.baseURI));
    this.node = new AudioWorkletNode(this.context, "pcm16-downsampler", {
      processorOptions: { targetRate: SAMPLE_RATE, chunkMs: CHUNK_MS },
    });
    this.node.port.onmessage = (event) => this.onAudio(event.data);
    this.open();
    this.source = this.context.createMediaStreamSource(this.media);
    this.source.connect(this.node);
    this.node.connect(this.context.destination); // pulled by the graph; the node outputs silence
    await this.context.resume();
  }

  open() {
    const protocols = ["realtime"];
    if (token()) protocols.push(`openai-insecure-api-key.${token()}`);
    this.socket = new WebSocket(realtimeUrl(), protocols);
    this.status("connecting…");
    this.socket.onopen = () => {
      this.send(sessionUpdate());
      for (const chunk of this.pending.splice(0)) this.sendAudio(chunk);
      this.status("listening");
    };
    this.socket.onmessage = (event) => this.onEvent(event.data);
    this.socket.onclose = (event) => this.onClose(event);
  }

  send(event) {
    this.socket.send(JSON.stringify(event));
  }

  sendAudio(pcm) {
    this.send({ type: "input_audio_buffer.append", audio: base64(pcm) });
  }

  onAudio(message) {
    if (this.committed) return;
    if (message.type === "audio") {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.sendAudio(message.pcm);
      else if (this.socket && this.socket.readyState === WebSocket.CONNECTING) this.pending.push(message.pcm);
    } else if (message.type === "flushed" && this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.committed = true;
      this.send({ type: "input_audio_buffer.commit" });
      this.status("finishing…");
    }
  }

  renderInterim() {
    $("interim").textContent = [...this.interims.values()].join(" ");
  }

  onEvent(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      showError(`the server sent something that is not JSON: ${String(data).slice(0, 200)}`);
      return;
    }
    switch (event.type) {
      case "input_audio_buffer.speech_started":
        this.status("hearing speech");
        break;
      case "input_audio_buffer.speech_stopped":
        this.status("listening");
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const before = this.interims.get(event.item_id) || "";
        this.interims.set(event.item_id, typeof event.text === "string" ? event.text : before + (event.delta || ""));
        this.renderInterim();
        break;
      }
      case "conversation.item.input_audio_transcription.completed":
        this.interims.delete(event.item_id);
        this.renderInterim();
        if (event.transcript && event.transcript.trim()) {
          const item = line(event.start, event.end, event.speaker, event.transcript.trim());
          item.dataset.itemId = event.item_id;
          $("finals").append(item);
          item.scrollIntoView({ block: "nearest" });
        }
        break;
      case "transcription_session.done": {
        this.finished = true;
        const speakers = event.num_speakers ? `, ${event.num_speakers} speaker(s)` : "";
        this.status(`done: ${clock(event.duration)}${speakers}`);
        if (event.warnings && event.warnings.length) showError(event.warnings.join("\n"));
        break;
      }
      case "error": {
        const error = event.error || {};
        showError(`${error.message || "the server reported an error"} (${error.code || error.type || "error"})`);
        break;
      }
      default:
        break; // session created/updated, committed: nothing to show
    }
  }

  onClose(event) {
    if (event.code !== 1000 && !(this.finished && event.code === 1005)) {
      const reason = event.reason || "the connection was lost";
      const current = $("error").hidden ? "" : `${$("error").textContent}\n`;
      showError(`${current}live session closed (${event.code}): ${reason}`);
      this.status("stopped");
    } else if (!this.finished) {
      this.status("stopped");
    }
    this.release();
    live = null;
    setLiveButtons(false);
  }

  // Stop: the last samples, then commit; the server answers with its last finals and `done`.
  stop() {
    this.status("finishing…");
    if (this.source) this.source.disconnect(); // no new samples; the worklet still holds a few
    if (this.node && this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.node.port.postMessage({ type: "flush" });
    } else if (this.socket) {
      this.socket.close(1000);
    }
    this.stopCapture();
  }

  stopCapture() {
    if (this.media) for (const track of this.media.getTracks()) track.stop();
    this.media = null;
  }

  release() {
    this.stopCapture();
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  }
}

let live = null;

function setLiveButtons(running) {
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("diarize").disabled = running;
  $("max-speakers").disabled = running;
}

function setUpLive() {
  $("start").addEventListener("click", async () => {
    setLiveButtons(true);
    live = new LiveSession();
    try {
      await live.start();
    } catch (error) {
      showError(`could not start: ${error.message || error}`);
      live.status("stopped");
      if (live.socket) live.socket.close(1000);
      live.release();
      live = null;
      setLiveButtons(false);
    }
  });
  $("stop").addEventListener("click", () => {
    $("stop").disabled = true;
    if (live) live.stop();
  });
}

// ---- file ------------------------------------------------------------------------------------------

let chosen = null; // the file and the speaker options it was transcribed with; downloads reuse both
let chosenOptions = {};
const downloads = new Map();

async function transcribe(file, format, options) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", MODEL);
  form.append("response_format", format);
  for (const [name, value] of Object.entries(options)) form.append(name, String(value));
  const response = await fetch(new URL("v1/audio/transcriptions", document.baseURI), {
    method: "POST",
    headers: authHeaders(),
    body: form,
  });
  if (!response.ok) throw new Error(await responseError(response));
  return response;
}

async function transcribeFile(file) {
  chosen = file;
  chosenOptions = speakerOptions();
  downloads.clear();
  showError("");
  $("file-transcript").replaceChildren();
  for (const button of document.querySelectorAll("[data-format]")) button.disabled = true;
  $("file-status").textContent = `transcribing ${file.name}…`;
  try {
    const result = await (await transcribe(file, "verbose_json", chosenOptions)).json();
    const segments = result.segments || [];
    for (const segment of segments) {
      $("file-transcript").append(line(segment.start, segment.end, segment.speaker, segment.text.trim()));
    }
    if (!segments.length && result.text) $("file-transcript").append(line(0, result.duration, "", result.text));
    const speakers = new Set(segments.map((s) => s.speaker).filter(Boolean));
    $("file-status").textContent = `${file.name}: ${clock(result.duration)}, ${speakers.size} speaker(s)`;
    for (const button of document.querySelectorAll("[data-format]")) button.disabled = false;
  } catch (error) {
    $("file-status").textContent = `${file.name}: failed`;
    showError(error.message || String(error));
  }
}

async function download(format) {
  if (!chosen) return;
  showError("");
  try {
    if (!downloads.has(format)) downloads.set(format, await (await transcribe(chosen, format, chosenOptions)).blob());
    const stem = chosen.name.replace(/\.[^.]*$/, "") || "transcript";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(downloads.get(format));
    link.download = `${stem}.${DOWNLOAD_EXTENSIONS[format]}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    showError(error.message || String(error));
  }
}

function setUpFile() {
  const drop = $("drop");
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) transcribeFile(file);
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) transcribeFile(file);
  });
  for (const button of document.querySelectorAll("[data-format]")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
}

setUpToken();
setUpLive();
setUpFile();
