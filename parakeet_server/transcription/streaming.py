"""Live streaming transcription on NeMo's own streaming library, many streams to one forward pass.

What it offers: a `StreamingTranscriber` owns one NeMo `BufferedRNNTPipeline`
(nemo.collections.asr.inference, the buffered RNNT/TDT pipeline meant for offline-trained models
such as parakeet-tdt-0.6b-v2) and serves any number of streams: `open_stream()`, `feed()` 16 kHz
float32 samples as they arrive, `step()` to decode one chunk of every stream that has one (all of
them in one batched call: continuous batching, as NeMo's own request streamer does), `close()` to
flush a stream's last words. Results are typed events: `Interim` (the utterance so far, may
change), `Final` (words with times in seconds from the stream's start and confidence; never
revised) and `EndOfUtterance`. NeMo's endpointer makes an utterance final after
`endpoint_silence_ms` of silence.

Pitfalls it guards (measured on the trained tiny TDT and espeak speech):
- sizes whose float sum truncates a sample (0.8 + 5.6 + 0.8 s) or whose frame counts NeMo rounds
  up (0.56 / 0.08 = 7.000000000000001) shift windows and garble words: StreamingConfig and
  `check_frames` refuse them, naming the setting;
- contexts under 0.32 s lose words: refused;
- NeMo joins consecutive steps by text, dropping a step's first tokens when they equal the last
  ones kept; in the stateless mode used here (each step re-decodes its window) those are a
  word's own repeated pieces a frame apart across the seam ("banana banana" -> "bana", "coffee"
  -> "cofee"): steps are joined by token time instead (`_time_merged_state`), and a piece
  repeated across a seam is dropped only when the new window did not decode it before the seam
  (one token a window moved by a frame: "warm" -> "wararm" otherwise);
- finals come only at an endpoint: past `max_utterance_s` a stream's endpoint silence drops to
  160 ms, so a monologue still ends its utterance at the next short pause between words;
- NeMo's wrapper reconfigures the model it is handed (decoding strategy, dither, dtype), so the
  transcriber restores its own copy of the checkpoint instead of sharing the batch engine's; it
  is built without NeMo's PipelineBuilder (which sets the global log level and matmul precision),
  and NeMo's log level is restored after the build;
- closing appends silence (NeMo's last frame must hold no words); counted as audio it skewed the
  last windows' per-window feature normalization and gave noisy speech made-up trailing words
  (15 dB SNR: WER 9.6 % streamed vs 2.1 % batch): the pipeline leaves it out of the window length;
- the pipeline is not thread-safe: every call into it holds one lock; `feed` only takes a short
  lock on the stream's buffer, so producers never wait for a forward pass.

Hotwords: a stream opened with hotwords holds a boosting tree (hotwords.PhraseBooster, one per
distinct set) in the biasing multi-model of a second decoding of the same model, and names it in
NeMo's per-stream option (`ASRRequestOptions.biasing_cfg`). NeMo applies that option only in its
stateful step, so the stateless step here passes it as a partial hypothesis per stream; a pass
decodes with the boosted decoding only when one of its streams has hotwords, so streams with
different hotwords (or none) share the pass, and passes without any are NeMo's step unchanged.

Cost: every step re-encodes each stream's whole window (left context + chunk + right context),
so on CPU a stream costs several times the compute of batch transcription; left context is the
knob. Streams that share a step share that pass.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.core.times import whole_ms
from parakeet_server.transcription.engine import TranscriptionEngine
from parakeet_server.transcription.hotwords import (
    NO_HOTWORDS,
    HotwordSet,
    PhraseBooster,
    biasing_config,
    boosted_decoding,
)
from parakeet_server.transcription.streaming_config import (
    MIN_ENDPOINT_SILENCE_MS,
    StreamingConfig,
    StreamingConfigError,
)

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]

# The shortest window a step encodes when close's silence is left out of it (a stream of a few
# samples); features need some samples to exist.
_MIN_WINDOW_SAMPLES = SAMPLE_RATE // 10


@dataclass(frozen=True)
class StreamWord:
    """One final word; times in seconds from the stream's first sample, whole milliseconds."""

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True)
class Interim:
    """The current utterance as decoded so far; later interims and its final may differ."""

    stream: int
    text: str
    start: float  # where the utterance's first token lies, seconds from the stream's start
    stability: float | None = None  # NeMo's buffered pipeline gives none


@dataclass(frozen=True)
class Final:
    """An utterance's words, decided and never revised."""

    stream: int
    text: str
    words: tuple[StreamWord, ...]


@dataclass(frozen=True)
class EndOfUtterance:
    """The stream's utterance ended (after its Final), at `at` seconds of the stream's audio."""

    stream: int
    at: float


StreamEvent = Interim | Final | EndOfUtterance


@dataclass(frozen=True)
class StepReport:
    """What one `step()` did: its events in order, the streams in each forward pass, each decoded
    stream's position after it (seconds of its audio decoded) and the streams whose pass raised
    (their state is unusable: cancel them)."""

    events: list[StreamEvent]
    batch_sizes: list[int]
    positions: dict[int, float] = field(default_factory=dict)
    failed: dict[int, Exception] = field(default_factory=dict)


@dataclass
class _Stream:
    """One live stream's audio not yet decoded and its place in the pipeline."""

    id: int
    endpoint_silence_ms: int  # this stream's own (NeMo's stop_history_eou)
    pending: Samples = field(default_factory=lambda: np.zeros(0, np.float32))
    fed_samples: int = 0  # samples fed (the stream's duration so far)
    sent_samples: int = 0  # valid samples handed to the pipeline (with the silence close adds)
    started: bool = False  # its first frame went to the pipeline
    utterance_start: int = 0  # sample where the current utterance's decoding began
    shortened_endpoint: bool = False
    last_interim: str = ""
    hotwords: HotwordSet = NO_HOTWORDS
    boost_id: int | None = None  # its hotwords' tree in the decoder's multi-model


def _streaming_cfg(config: StreamingConfig, checkpoint: str, device: str) -> Any:
    """The full config NeMo's buffered pipeline reads (it needs every section present)."""
    from omegaconf import OmegaConf

    on_gpu = device.startswith("cuda")
    return OmegaConf.create(
        {
            "asr_decoding_type": "rnnt",
            "pipeline_type": "buffered",
            "asr_output_granularity": "word",
            "asr": {
                "model_name": checkpoint,
                "device": "cuda" if on_gpu else "cpu",
                "device_id": int(device.split(":")[1]) if ":" in device else 0,
                "compute_dtype": "bfloat16" if on_gpu else "float32",
                "use_amp": on_gpu,
                "decoding": {"strategy": "greedy_batch", "greedy": {"preserve_frame_confidence": True}},
            },
            "streaming": {
                "sample_rate": SAMPLE_RATE,
                # Stateless: each step decodes its window afresh; _time_merged_state joins the
                # steps' tokens by frame time.
                "stateful": False,
                "batch_size": config.max_batch_streams,
                "chunk_size": config.chunk_s,
                "left_padding_size": config.left_context_s,
                "right_padding_size": config.right_context_s,
                "request_type": "frame",
                "padding_mode": "right",
                "word_boundary_tolerance": 4,
            },
            "endpointing": {"stop_history_eou": config.endpoint_silence_ms, "residue_tokens_at_end": 0},
            "return_tail_result": False,
            # The batch engine's confidence: entropy based, a word's is its least confident token's.
            "confidence": {
                "exclude_blank": True,
                "aggregation": "min",
                "method_cfg": {
                    "name": "entropy",
                    "entropy_type": "tsallis",
                    "alpha": 0.5,
                    "entropy_norm": "exp",
                },
            },
            "enable_itn": False,
            "enable_nmt": False,
            "itn": {"batch_size": 1, "n_jobs": 1, "left_padding_size": 4},
        }
    )


@contextlib.contextmanager
def _nemo_globals_kept() -> Iterator[None]:
    """Undo what building a pipeline does to process-wide state (NeMo's log level, matmul precision)."""
    import torch
    from nemo.utils import logging as nemo_logging

    level = nemo_logging.getEffectiveLevel()
    precision = torch.get_float32_matmul_precision()
    nemo_logging.setLevel(logging.WARNING)
    try:
        yield
    finally:
        nemo_logging.setLevel(level)
        torch.set_float32_matmul_precision(precision)


def _build_pipeline(config: StreamingConfig, model: Any, device: str) -> Any:
    """A BufferedRNNTPipeline around `model` (an ASRModel the pipeline then owns), merging steps by
    token time (see `_time_merged_pipeline`)."""
    from nemo.collections.asr.inference.factory.buffered_pipeline_builder import BufferedPipelineBuilder
    from nemo.collections.asr.inference.model_wrappers.rnnt_inference_wrapper import RNNTInferenceWrapper

    class OwnedModel(RNNTInferenceWrapper):  # type: ignore[misc]
        """NeMo's RNNT wrapper, handed a loaded model instead of loading the checkpoint again."""

        def load_model(self, model_name: str, map_location: Any) -> Any:
            return model.to(map_location).eval()

    cfg = _streaming_cfg(config, "<loaded model>", device)
    decoding = BufferedPipelineBuilder.get_rnnt_decoding_cfg(cfg)
    wrapper = OwnedModel(
        model_name=cfg.asr.model_name,
        decoding_cfg=decoding,
        device=cfg.asr.device,
        device_id=cfg.asr.device_id,
        compute_dtype=cfg.asr.compute_dtype,
        use_amp=cfg.asr.use_amp,
    )
    boosting = _boosting(wrapper, decoding, device)
    pipeline = _time_merged_pipeline()(cfg, wrapper)
    pipeline.boosting = boosting
    return pipeline


@dataclass(frozen=True)
class _Boosting:
    """A second decoding of the pipeline's model whose greedy decoder holds NeMo's biasing
    multi-model, and the boosting trees registered in it."""

    decoding: Any
    booster: PhraseBooster


def _boosting(wrapper: Any, decoding: Any, device: str) -> _Boosting | None:
    """The boosted decoding (the pipeline's settings plus per-stream biasing), the plain one left in place.

    As in the batch engine: passes without hotwords keep NeMo's plain decoding object (their output
    unchanged, no fusion cost); a pass with some stream's hotwords decodes with this one.
    """
    model = wrapper.asr_model
    made = boosted_decoding(model, decoding, "live hotwords")
    if made is None:
        return None
    wrapper.set_decoding_strategy("rnnt")  # the plain decoding back, as NeMo's wrapper set it
    boosted, multi_model = made
    if multi_model is None:
        log.info("live hotwords off: this model's greedy decoder has no biasing multi-model")
        return None
    return _Boosting(boosted, PhraseBooster(model.tokenizer, multi_model, device.startswith("cuda")))


@functools.cache
def _time_merged_state() -> Any:
    """NeMo's RNNTStreamingState, joining a stateless stream's steps by token time.

    Each stateless step keeps only the tokens whose frame lies in the step's own span of its
    window (ClippedRNNTGreedyDecoder: from the frame where the previous step stopped to this
    step's end), so consecutive steps never share a frame. NeMo's StreamingState.update_state
    then de-duplicates by text: when a step's first tokens equal the last ones kept (up to
    OVERLAP_SEARCH_TH = 3 tokens within CLOSE_IN_TIME_TH = 2 frames; after an endpoint, the last
    token alone) it drops them. That drop is right when two windows placed one token a frame
    apart on either side of the seam ("w|ar" + "ar|m" -> "wararm" without it), and wrong when the
    word repeats a piece ("ba|an" + "an|a" at frames 33 and 34 -> "bana", "co|f" + "f|ee" ->
    "cofee"). NeMo has no setting for it (both thresholds are module constants).

    This state keeps tokens by time: a token before the stream frame the previous step committed
    up to is dropped (that audio was decoded already), one at or after it is kept, except for the
    one case text cannot decide and time alone gets wrong: the step begins with the same tokens
    the previous step ended with, within 2 frames. Then the step's own window decides: if it
    also decoded those tokens before the seam, the word repeats them and both are kept; if not,
    the window moved them across the seam and the repeat is dropped.
    """
    from nemo.collections.asr.inference.streaming.state.rnnt_state import RNNTStreamingState
    from nemo.collections.asr.inference.streaming.state.state import CLOSE_IN_TIME_TH, OVERLAP_SEARCH_TH

    class TimeMergedState(RNNTStreamingState):  # type: ignore[misc]
        """RNNTStreamingState that joins steps at the committed frame instead of by token text."""

        committed_until: float  # stream frame up to which steps kept tokens
        seam_tail: list[tuple[int, float]]  # the last tokens kept, with their stream frames
        seen_before_seam: list[int]  # this step's window's own tokens before the seam

        def update_state(self, completed_output: dict[str, Any], eou_detected: bool) -> None:
            if not completed_output or not completed_output["tokens"]:
                self.last_token = self.last_token_idx = None
                return
            tokens: list[int] = completed_output["tokens"]
            times = [t + self.global_offset for t in completed_output["timesteps"]]
            completed_output["timesteps"] = times  # stream frames, as NeMo's update_state leaves them
            # Clipped tokens come in time order: the ones before the boundary are a prefix.
            skip = next((i for i, t in enumerate(times) if t >= self.committed_until), len(times))
            skip += self._moved_across_seam(tokens[skip:], times[skip:])
            self._update_state(completed_output, skip)
            self.seam_tail = (self.seam_tail + list(zip(tokens[skip:], times[skip:], strict=True)))[
                -OVERLAP_SEARCH_TH:
            ]
            self.eou_detected_before = eou_detected

        def _moved_across_seam(self, tokens: list[int], times: list[float]) -> int:
            """How many first `tokens` are the previous step's last ones, placed a frame later."""
            tail, seen = self.seam_tail, self.seen_before_seam
            for k in range(min(OVERLAP_SEARCH_TH, len(tail), len(tokens)), 0, -1):
                if [token for token, _ in tail[-k:]] == tokens[:k]:
                    if times[k - 1] - tail[-k][1] > CLOSE_IN_TIME_TH or seen[-k:] == tokens[:k]:
                        return 0  # far apart, or this window has them before the seam too
                    return k
            return 0

        def update_from_decoder_results(self, start_idx: int, end_idx: int) -> None:
            super().update_from_decoder_results(start_idx, end_idx)
            # Called after update_state and before the pipeline advances global_offset, so the
            # step's end frame in its window plus the offset is the boundary in stream frames.
            self.committed_until = end_idx + self.global_offset

        def _additional_params_reset(self) -> None:
            super()._additional_params_reset()
            self.committed_until = float("-inf")
            self.seam_tail = []
            self.seen_before_seam = []

    return TimeMergedState


@functools.cache
def _time_merged_pipeline() -> Any:
    """NeMo's BufferedRNNTPipeline whose streams' states are `_time_merged_state()` (stateless only:
    stateful steps carry the decoder's state across the seam, where NeMo's own merge is meant)."""
    from nemo.collections.asr.inference.pipelines.buffered_rnnt_pipeline import BufferedRNNTPipeline

    class TimeMergedPipeline(BufferedRNNTPipeline):  # type: ignore[misc]
        """The buffered RNNT pipeline, its streams merged by token time, each boosting its own hotwords."""

        boosting: _Boosting | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Per stream: how many of its buffer's last samples are the silence close appends.
            self.appended_silence: dict[int, int] = {}
            self._step_silence: list[int] = []  # the same for each stream of the current pass
            super().__init__(*args, **kwargs)  # it encodes a window of zeros already

        def encode_raw_signals(
            self, frames: list[Any], raw_signals: list[Any], left_paddings: list[int]
        ) -> Any:
            # Closing appends silence so that NeMo's last frame holds no words (see `_flush`).
            # That silence is no audio: counted in the buffer's length it drew the features'
            # per-window normalization towards digital zeros and gave the encoder an edge from
            # noise to zeros it never heard in training, where noisy speech ends in made-up
            # words ("city" -> "city ture"). Excluded here, as NeMo excludes a short last
            # frame's padding: the window ends where the stream's audio ends.
            self._step_silence = [self.appended_silence.get(frame.stream_id, 0) for frame in frames]
            return super().encode_raw_signals(frames, raw_signals, left_paddings)

        def preprocess(self, buffers: Any, buffer_lens: Any, expected_feature_buffer_len: int) -> Any:
            import torch

            if any(self._step_silence):
                silence = torch.tensor(self._step_silence, dtype=buffer_lens.dtype, device=buffer_lens.device)
                buffer_lens = (buffer_lens - silence).clamp(min=_MIN_WINDOW_SAMPLES)
            return super().preprocess(buffers, buffer_lens, expected_feature_buffer_len)

        def create_state(self, options: Any) -> Any:
            if self.stateful:
                raise ValueError("steps are merged by token time only in stateless streaming")
            state = _time_merged_state()()
            state.__dict__.update(super().create_state(options).__dict__)  # NeMo's settings for it
            return state

        def run_greedy_decoder(
            self, state: Any, request: Any, timesteps: Any, tokens: Any, *args: Any, **kwargs: Any
        ) -> Any:
            # The window's whole hypothesis is at hand only here: keep what it decoded before the
            # seam (frames in the window, 0 offset in stateless mode) for the state's merge.
            seam = state.committed_until - state.global_offset
            pairs = zip(tokens.tolist(), timesteps.tolist(), strict=True)  # NeMo passes tensors
            state.seen_before_seam = [token for token, t in pairs if t < seam]
            return super().run_greedy_decoder(state, request, timesteps, tokens, *args, **kwargs)

        def stateless_transcribe_step(
            self, requests: list[Any], encs: Any, enc_lens: Any, ready_state_ids: set[int]
        ) -> None:
            """NeMo's stateless step, decoding each stream with the boosting tree its options name.

            NeMo's own stateless step passes no partial hypotheses, so the per-stream biasing its
            stateful step reads from `state.options.biasing_cfg` is not applied; here each stream of
            the pass gets a fresh empty hypothesis naming its tree (None without hotwords, which the
            decoder leaves unboosted), all in the one batched decoding. A pass where no stream has
            hotwords is NeMo's step unchanged.
            """
            states = [self.get_state(request.stream_id) for request in requests]
            boosting = self.boosting
            if boosting is None or not any(state.has_biasing_request() for state in states):
                super().stateless_transcribe_step(requests, encs, enc_lens, ready_state_ids)
                return
            partial = [
                boosting.booster.request(state.options.biasing_cfg.multi_model_id)
                if state.has_biasing_request()
                else None
                for state in states
            ]
            model = self.asr_model.asr_model
            plain, model.decoding = model.decoding, boosting.decoding
            try:
                hypotheses = self.asr_model.decode(encs, enc_lens, partial_hypotheses=partial)
            finally:
                model.decoding = plain
            ready_state_ids.update(self.decode_step(hypotheses, requests, states))

    return TimeMergedPipeline


class StreamingTranscriber:
    """One NeMo streaming pipeline serving many live streams; thread-safe (one lock around NeMo)."""

    def __init__(
        self, model: str | Path | Any, config: StreamingConfig | None = None, device: str = "auto"
    ) -> None:
        """`model`: a .nemo checkpoint (restored here: the pipeline reconfigures the model it gets)
        or an ASRModel this transcriber may own."""
        import torch

        self.config = config or StreamingConfig()
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        with _nemo_globals_kept():
            if isinstance(model, str | Path):
                from nemo.collections.asr.models import ASRModel

                model = ASRModel.restore_from(str(model), map_location=torch.device(self.device))
            stride = float(model.cfg.preprocessor.window_stride)
            self.frame_s = stride * int(model.encoder.subsampling_factor)
            self.config.check_frames(self.frame_s, stride)
            self._pipeline = _build_pipeline(self.config, model, self.device)
        self._pipeline.open_session()
        self._pipeline_lock = threading.Lock()  # NeMo's pipeline is not thread-safe
        self._streams_lock = threading.Lock()  # feed() only waits for this one
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        # One multi-model entry per distinct hotword set of the open streams: [its id, streams using it].
        self._boosts: dict[HotwordSet, list[int]] = {}

    @classmethod
    def for_engine(
        cls, engine: TranscriptionEngine, config: StreamingConfig | None = None
    ) -> StreamingTranscriber:
        """A transcriber on the checkpoint and device the batch engine loads (its own copy)."""
        checkpoint = engine._nemo_file()
        device = engine.config.device
        return cls(checkpoint, config, device=device)

    @property
    def supports_hotwords(self) -> bool:
        """Whether streams may boost phrases (NeMo's greedy label-looping decoding has per-stream biasing)."""
        return self._pipeline.boosting is not None

    # Streams -----------------------------------------------------------------------------

    def open_stream(self, endpoint_silence_ms: int | None = None, hotwords: HotwordSet = NO_HOTWORDS) -> int:
        """A new stream's id; its word times count from the first sample fed to it. Its utterances
        end after `endpoint_silence_ms` of silence (the config's when None); its decoding boosts
        `hotwords` (checked ones: `hotwords.check_hotwords`)."""
        silence = self.config.endpoint_silence_ms if endpoint_silence_ms is None else endpoint_silence_ms
        if silence < MIN_ENDPOINT_SILENCE_MS:
            raise StreamingConfigError(
                "endpoint_silence_ms", f"must be at least {MIN_ENDPOINT_SILENCE_MS} ms (got {silence} ms)"
            )
        boost_id = self._hold_boost(hotwords) if hotwords else None
        with self._streams_lock:
            stream = _Stream(next(self._ids), silence, hotwords=hotwords, boost_id=boost_id)
            self._streams[stream.id] = stream
            return stream.id

    def _hold_boost(self, hotwords: HotwordSet) -> int:
        """The multi-model id of `hotwords`' tree, registered for the first stream that boosts them
        (between passes: the pipeline lock is held)."""
        boosting = self._pipeline.boosting
        if boosting is None:
            raise InvalidRequest(
                "hotwords: this model's streaming decoding cannot boost phrases (NeMo boosts them only in "
                "greedy batch decoding of RNN-T/TDT models); send the stream without hotwords",
                reason="INVALID_FIELD",
            )
        with self._pipeline_lock:
            held = self._boosts.get(hotwords)
            if held is None:
                held = self._boosts[hotwords] = [boosting.booster.register([hotwords])[hotwords], 0]
            held[1] += 1
            return held[0]

    def _release_boost(self, stream: _Stream) -> None:
        """Drop the stream's hold on its tree; the last stream boosting a set removes it (pipeline lock held)."""
        if stream.boost_id is None or self._pipeline.boosting is None:
            return
        stream.boost_id = None
        held = self._boosts[stream.hotwords]
        held[1] -= 1
        if not held[1]:
            del self._boosts[stream.hotwords]
            self._pipeline.boosting.booster.unregister([held[0]])

    def feed(self, stream_id: int, samples: Samples) -> None:
        """Queue 16 kHz mono float32 samples; a later `step()` decodes them a chunk at a time."""
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._streams_lock:
            stream = self._stream(stream_id)
            stream.pending = np.concatenate([stream.pending, audio])
            stream.fed_samples += len(audio)

    def ready_streams(self) -> int:
        """How many streams have a whole chunk waiting (what the next `step()` would batch)."""
        chunk = self.config.chunk_samples
        with self._streams_lock:
            return sum(len(s.pending) >= chunk for s in self._streams.values())

    def pending_samples(self, stream_id: int) -> int:
        """Samples fed to the stream and not decoded yet (what back-pressure bounds)."""
        with self._streams_lock:
            return len(self._stream(stream_id).pending)

    @property
    def open_streams(self) -> int:
        with self._streams_lock:
            return len(self._streams)

    def _stream(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise InvalidRequest(f"no open stream {stream_id}")
        return stream

    # Decoding ----------------------------------------------------------------------------

    def step(self) -> StepReport:
        """Decode one chunk of every stream that has one, `max_batch_streams` streams to a pass."""
        chunk = self.config.chunk_samples
        with self._pipeline_lock:
            with self._streams_lock:
                batch = [
                    (s, self._take(s, last=False)) for s in self._streams.values() if len(s.pending) >= chunk
                ]
            report = StepReport([], [])
            size = self.config.max_batch_streams
            for first in range(0, len(batch), size):
                group = batch[first : first + size]
                report.batch_sizes.append(len(group))
                try:
                    report.events.extend(self._run(group))
                except Exception as error:  # one failed pass fails its streams, not the others
                    log.exception("streaming pass over %d streams failed", len(group))
                    report.failed.update((stream.id, error) for stream, _ in group)
                    continue
                report.positions.update((stream.id, self._position(stream)) for stream, _ in group)
            return report

    def close(self, stream_id: int) -> list[StreamEvent]:
        """End a stream: decode what is left of its audio and flush its last words as a Final."""
        with self._pipeline_lock:
            with self._streams_lock:
                stream = self._stream(stream_id)
                del self._streams[stream_id]
            try:
                return self._flush(stream)
            finally:
                self._pipeline.appended_silence.pop(stream_id, None)
                self._release_boost(stream)

    def _flush(self, stream: _Stream) -> list[StreamEvent]:
        """Decode a closed stream's rest (under the pipeline lock)."""
        events: list[StreamEvent] = []
        if not stream.started and not len(stream.pending):
            return events
        # NeMo's last frame (is_last) drops words it has not committed yet when an endpoint
        # came just before it ("call back tomorrow" ended "call | tomorrow"). Silence first:
        # enough for every real sample to be decoded with its right context by ordinary
        # steps, so the last frame holds only silence.
        chunk = self.config.chunk_samples
        right = round(self.config.right_context_s * SAMPLE_RATE)
        padded = -(-(len(stream.pending) + right) // chunk) * chunk + chunk
        stream.pending = np.concatenate([stream.pending, np.zeros(padded - len(stream.pending), np.float32)])
        try:
            while True:
                last = len(stream.pending) <= self.config.chunk_samples
                events += self._run([(stream, self._take(stream, last=last))])
                if last:
                    return events
        except BaseException:  # a failed flush leaves nothing behind either
            self._forget(stream.id)
            raise

    def cancel(self, stream_id: int) -> None:
        """Drop a stream without decoding the rest (a client that went away)."""
        with self._pipeline_lock:
            with self._streams_lock:
                stream = self._stream(stream_id)
                del self._streams[stream_id]
            try:
                self._forget(stream_id)
            finally:
                self._release_boost(stream)

    def _forget(self, stream_id: int) -> None:
        """Drop NeMo's state and buffer of a stream (under the pipeline lock)."""
        self._pipeline.delete_state(stream_id)
        self._pipeline.bufferer.rm_bufferer(stream_id)
        self._pipeline.appended_silence.pop(stream_id, None)

    def _take(self, stream: _Stream, last: bool) -> Any:
        """The stream's next chunk as a NeMo Frame (zero-padded when it is the short last one)."""
        import torch
        from nemo.collections.asr.inference.streaming.framing.request import Frame
        from nemo.collections.asr.inference.streaming.framing.request_options import ASRRequestOptions

        chunk = self.config.chunk_samples
        samples, stream.pending = stream.pending[:chunk], stream.pending[chunk:]
        valid = len(samples)
        if valid < chunk:
            samples = np.pad(samples, (0, chunk - valid))
        first = not stream.started
        stream.started = True
        stream.sent_samples += valid
        appended = min(max(0, stream.sent_samples - stream.fed_samples), self.config.window_samples)
        if appended:
            self._pipeline.appended_silence[stream.id] = appended
        return Frame(
            samples=torch.from_numpy(np.ascontiguousarray(samples)),
            stream_id=stream.id,
            is_first=first,
            is_last=last,
            length=valid,
            options=ASRRequestOptions(
                stop_history_eou=stream.endpoint_silence_ms,
                # NeMo's per-stream biasing option; the pipeline's stateless step applies it.
                biasing_cfg=biasing_config(stream.boost_id) if stream.boost_id is not None else None,
            )
            if first
            else None,
        )

    def _run(self, batch: Sequence[tuple[_Stream, Any]]) -> list[StreamEvent]:
        """One forward pass over one frame per stream, turned into events."""
        import torch

        with torch.inference_mode():
            outputs = self._pipeline.transcribe_step([frame for _, frame in batch])
        events: list[StreamEvent] = []
        for (stream, frame), output in zip(batch, outputs, strict=True):
            events += self._events(stream, output, frame.is_last)
        return events

    def _events(self, stream: _Stream, output: Any, is_last: bool) -> list[StreamEvent]:
        words = tuple(
            StreamWord(
                word=segment.text.strip(),
                start=whole_ms(float(segment.start)),
                end=whole_ms(float(segment.end)),
                confidence=float(segment.conf) if segment.conf is not None else None,
            )
            for segment in (output.final_segments or [])
            if segment.text.strip()
        )
        events: list[StreamEvent] = []
        if words:
            events.append(Final(stream.id, " ".join(w.word for w in words), words))
            events.append(EndOfUtterance(stream.id, self._position(stream)))
            stream.utterance_start = stream.sent_samples
            stream.last_interim = ""
            if stream.shortened_endpoint and not is_last:
                self._set_endpoint(stream, stream.endpoint_silence_ms)
                stream.shortened_endpoint = False
        elif is_last:
            events.append(EndOfUtterance(stream.id, self._position(stream)))
        if is_last:
            return events
        interim = output.partial_transcript.strip()
        if self.config.interim_results and interim and interim != stream.last_interim:
            events.append(Interim(stream.id, interim, self._utterance_start(stream)))
        stream.last_interim = interim
        too_long = stream.sent_samples - stream.utterance_start > self.config.max_utterance_s * SAMPLE_RATE
        if too_long and not stream.shortened_endpoint:
            # Finals come only at an endpoint: end this long utterance at the next short pause.
            self._set_endpoint(stream, MIN_ENDPOINT_SILENCE_MS)
            stream.shortened_endpoint = True
        return events

    def _utterance_start(self, stream: _Stream) -> float:
        """Seconds from the stream's start to the current utterance's first token (its stream
        frame in NeMo's state), or to where its decoding began when no token is kept yet."""
        state = self._pipeline.get_state(stream.id)
        frames = getattr(state, "timesteps", None)
        if frames:
            return whole_ms(max(0.0, float(frames[0]) * self.frame_s))
        return whole_ms(stream.utterance_start / SAMPLE_RATE)

    @staticmethod
    def _position(stream: _Stream) -> float:
        """Seconds of the stream's own audio decoded so far (not the silence close appends)."""
        return whole_ms(min(stream.sent_samples, stream.fed_samples) / SAMPLE_RATE)

    def _set_endpoint(self, stream: _Stream, silence_ms: int) -> None:
        state = self._pipeline.get_state(stream.id)
        if state is not None and state.options is not None:
            state.options.stop_history_eou = silence_ms
