"""The transcription engine: the only code that touches NeMo.

Loads parakeet-tdt-0.6b-v2 (or any NeMo RNNT/TDT checkpoint) from a `.nemo` file, a local
directory or a Hugging Face id (local caches first, see parakeet_server.core.model_store), puts it in
eval mode on the GPU when there is one, and transcribes batches of in-memory 16 kHz waveforms
with TDT word and segment timestamps.

Recordings up to `window_s` go through the model whole, several to a pass. Longer ones are
transcribed as overlapping windows of `window_s` (parakeet_server.transcription.windows plans them and
merges their words at the seams), `window_batch_size` windows to a pass, so peak memory is set by
the window and the batch, never by the recording's length.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.core.model_store import RepoFile, looks_like_repo_id, resolve
from parakeet_server.core.times import whole_ms
from parakeet_server.transcription.hotwords import NO_HOTWORDS, HotwordSet, PhraseBooster, boosted_decoding
from parakeet_server.transcription.windows import FrameWord, merge_windows, plan_windows

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nvidia/parakeet-tdt-0.6b-v2"
GPU_WINDOW_BATCH_SIZE = 4


@dataclass(frozen=True)
class TranscriptionEngineConfig:
    """What to load and how to run it."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on a GPU that supports it, else fp32
    # Longer recordings are cut into windows this long (full attention within each); memory
    # follows the window, not the recording. Measured choices: docs/deploy.md.
    window_s: float = 120.0
    window_overlap_s: float = 16.0
    # Windows per forward pass; that many windows' worth of samples also caps a pass of short
    # recordings (padded to the longest).
    # None: 1 on CPU (batching does not speed it up there), 4 on a GPU.
    window_batch_size: int | None = None
    word_confidence: bool = True

    def __post_init__(self) -> None:
        if not self.window_s >= 1.0:
            raise ValueError(f"window must be at least 1 s (got {self.window_s} s)")
        if not 0 <= self.window_overlap_s < self.window_s / 2:
            raise ValueError(
                f"window overlap must be in [0, window/2) (window {self.window_s} s, "
                f"overlap {self.window_overlap_s} s)"
            )
        if self.window_batch_size is not None and self.window_batch_size < 1:
            raise ValueError(f"window batch size must be at least 1 (got {self.window_batch_size})")


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True)
class SegmentTiming:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class EngineTranscript:
    """One recording's transcript, as the model produced it."""

    text: str
    words: list[WordTiming]
    segments: list[SegmentTiming]


def _confidence_config() -> dict[str, Any]:
    """NeMo's per-word confidence (entropy based), aggregated with min as its docs suggest."""
    return {
        "preserve_frame_confidence": True,
        "preserve_token_confidence": True,
        "preserve_word_confidence": True,
        "exclude_blank": True,
        "aggregation": "min",
        "method_cfg": {"name": "entropy", "entropy_type": "tsallis", "alpha": 0.5, "entropy_norm": "exp"},
    }


def _hypothesis_to_transcript(hypothesis: Any) -> EngineTranscript:
    stamps = hypothesis.timestamp if isinstance(hypothesis.timestamp, dict) else {}
    confidences = list(getattr(hypothesis, "word_confidence", None) or [])
    raw_words = stamps.get("word", [])
    words = [
        WordTiming(
            word=str(entry["word"]),
            start=whole_ms(float(entry["start"])),
            end=whole_ms(float(entry["end"])),
            confidence=float(confidences[index]) if index < len(confidences) else None,
        )
        for index, entry in enumerate(raw_words)
    ]
    segments = [
        SegmentTiming(
            text=str(entry["segment"]),
            start=whole_ms(float(entry["start"])),
            end=whole_ms(float(entry["end"])),
        )
        for entry in stamps.get("segment", [])
    ]
    return EngineTranscript(text=str(hypothesis.text), words=words, segments=segments)


def _frame_words(hypothesis: Any, first_frame: int) -> list[FrameWord]:
    """A window's words in frames of the recording (its own offsets moved by its first frame)."""
    stamps = hypothesis.timestamp if isinstance(hypothesis.timestamp, dict) else {}
    confidences = list(getattr(hypothesis, "word_confidence", None) or [])
    return [
        FrameWord(
            word=str(entry["word"]),
            start=first_frame + int(entry["start_offset"]),
            end=first_frame + int(entry["end_offset"]),
            confidence=float(confidences[index]) if index < len(confidences) else None,
        )
        for index, entry in enumerate(stamps.get("word", []))
    ]


def _batches(lengths: Sequence[int], budget: int) -> Iterator[list[int]]:
    """Indices in order, grouped so that no group, padded to its longest, holds more than `budget` samples."""
    group: list[int] = []
    longest = 0
    for index, length in enumerate(lengths):
        if group and (len(group) + 1) * max(longest, length) > budget:
            yield group
            group, longest = [], 0
        group.append(index)
        longest = max(longest, length)
    if group:
        yield group


class TranscriptionEngine:
    """A loaded NeMo ASR model. Not thread-safe: one thread (the micro-batcher's) calls it."""

    def __init__(self, config: TranscriptionEngineConfig | None = None) -> None:
        self.config = config or TranscriptionEngineConfig()
        self._model: Any = None
        self._device = "cpu"
        self._autocast_dtype: Any = None
        # Hotword requests decode with a second decoding object whose greedy decoder holds NeMo's
        # per-utterance biasing multi-model; requests without hotwords keep the plain one (unchanged
        # output, no fusion overhead, CUDA graphs as before).
        self._plain_decoding: Any = None
        self._boosted_decoding: Any = None
        self._booster: PhraseBooster | None = None

    @property
    def name(self) -> str:
        """The model as the response reports it: the HF id, or the file name of a local model."""
        if looks_like_repo_id(self.config.model):
            return self.config.model
        return Path(self.config.model).name

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _nemo_file(self) -> Path:
        """The .nemo checkpoint for the configured model (a file, a directory, or an HF id)."""
        source = self.config.model
        path = Path(source)
        if not path.exists() and looks_like_repo_id(source):
            # NVIDIA's repos hold one checkpoint named after the model, e.g. parakeet-tdt-0.6b-v2.nemo.
            checkpoint = f"{source.split('/')[1]}.nemo"
            path = resolve([RepoFile(source, checkpoint)], allow_patterns=["*.nemo", "*.json"])[source]
        if path.is_file():
            return path
        if path.is_dir():
            checkpoints = sorted(path.glob("*.nemo"))
            if checkpoints:
                return checkpoints[0]
            raise PreconditionFailed(f"no .nemo checkpoint in {path}")
        raise PreconditionFailed(
            f"model {source!r} is neither a local .nemo file or directory nor a Hugging Face id (org/name)"
        )

    def load(self) -> None:
        import torch
        from nemo.collections.asr.models import ASRModel
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.WARNING)
        checkpoint = self._nemo_file()
        self._device = (
            "cuda" if self.config.device == "auto" and torch.cuda.is_available() else self.config.device
        )
        if self._device == "auto":
            self._device = "cpu"
        log.info("loading %s from %s on %s", self.name, checkpoint, self._device)
        model = ASRModel.restore_from(str(checkpoint), map_location=torch.device(self._device))
        model.eval()
        model.freeze()
        decoding = copy.deepcopy(model.cfg.decoding)
        from omegaconf import open_dict

        with open_dict(decoding):
            decoding.compute_timestamps = True
            if self.config.word_confidence:
                decoding.confidence_cfg = _confidence_config()
        self._setup_boosting(model, decoding)
        model.change_decoding_strategy(decoding, verbose=False)
        self._plain_decoding = model.decoding
        self._autocast_dtype = self._pick_precision(torch)
        self._model = model

    def _setup_boosting(self, model: Any, decoding: Any) -> None:
        """The boosted decoding (same settings plus per-stream biasing), when the model's decoding has it.

        NeMo offers per-utterance boosting in the label-looping greedy batch decoder of RNN-T and TDT;
        other strategies leave `_booster` None and hotword requests are refused.
        """
        made = boosted_decoding(model, decoding, "hotwords")
        if made is None:
            return
        boosted, multi_model = made
        if multi_model is None:
            log.info("hotwords off: this model's greedy decoder has no biasing multi-model")
            return
        self._boosted_decoding = boosted
        self._booster = PhraseBooster(
            model.tokenizer, multi_model, use_triton=self._device.startswith("cuda")
        )

    @property
    def supports_hotwords(self) -> bool:
        return self._booster is not None

    def _pick_precision(self, torch: Any) -> Any:
        precision = self.config.precision
        if self._device != "cuda" or precision == "fp32":
            return None
        if precision == "fp16":
            return torch.float16
        if precision in ("bf16", "auto") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None

    def warm_up(self) -> None:
        """One pass on a second of noise, so the first request does not pay for lazy init."""
        noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.01
        self.transcribe([noise])

    @property
    def _frame_samples(self) -> int:
        """Samples per encoder frame (the unit of TDT timestamps): hop length times subsampling."""
        hop = round(float(self._model.cfg.preprocessor.window_stride) * SAMPLE_RATE)
        return hop * int(self._model.encoder.subsampling_factor)

    @property
    def _window_batch_size(self) -> int:
        if self.config.window_batch_size is not None:
            return self.config.window_batch_size
        return GPU_WINDOW_BATCH_SIZE if self._device.startswith("cuda") else 1

    def _frames(self, seconds: float) -> int:
        return round(seconds * SAMPLE_RATE / self._frame_samples)

    def transcribe(
        self,
        waveforms: Sequence[npt.NDArray[np.float32]],
        hotwords: Sequence[HotwordSet] | None = None,
    ) -> list[EngineTranscript]:
        """Transcribe 16 kHz mono waveforms: short ones whole, in bounded batches; long ones in windows.

        `hotwords`: each waveform's phrases to boost (empty: none); recordings with different sets
        share the same passes.
        """
        if self._model is None:
            raise PreconditionFailed("the transcription model is not loaded")
        boosts = list(hotwords) if hotwords is not None else [NO_HOTWORDS] * len(waveforms)
        if len(boosts) != len(waveforms):
            raise ValueError(f"{len(boosts)} hotword sets for {len(waveforms)} waveforms")
        if any(boosts) and self._booster is None:
            raise InvalidRequest(
                f"hotwords are not supported by {self.name}'s decoding (NeMo boosts phrases only in greedy "
                "batch decoding of RNN-T/TDT models); send the request without hotwords",
                reason="INVALID_FIELD",
            )
        window = self._frames(self.config.window_s) * self._frame_samples
        results: list[EngineTranscript | None] = [None] * len(waveforms)
        short = [i for i, wave in enumerate(waveforms) if len(wave) <= window]
        # Short recordings share passes (the micro-batcher's point), up to the audio of a window batch.
        for group in _batches([len(waveforms[i]) for i in short], self._window_batch_size * window):
            indices = [short[position] for position in group]
            sets = [boosts[i] for i in indices]
            batch = [waveforms[i] for i in indices]
            hypotheses = self._decode(batch, sets) if any(sets) else self._decode(batch)
            for index, hypothesis in zip(indices, hypotheses, strict=True):
                results[index] = _hypothesis_to_transcript(hypothesis)
        for index in (i for i, wave in enumerate(waveforms) if len(wave) > window):
            results[index] = self._transcribe_windowed(waveforms[index], boosts[index])
        return [result for result in results if result is not None]

    def _transcribe_windowed(
        self, samples: npt.NDArray[np.float32], hotwords: HotwordSet = NO_HOTWORDS
    ) -> EngineTranscript:
        """One long recording through overlapping windows, batched; their words merged at the seams."""
        frame = self._frame_samples
        windows = plan_windows(
            -(-len(samples) // frame),
            self._frames(self.config.window_s),
            self._frames(self.config.window_overlap_s),
        )
        words: list[list[FrameWord]] = []
        size = self._window_batch_size
        for first in range(0, len(windows), size):
            batch = windows[first : first + size]
            # Slices are views: the recording is never copied, only each pass's windows are batched.
            slices = [samples[w.start * frame : w.end * frame] for w in batch]
            hypotheses = self._decode(slices, [hotwords] * len(batch)) if hotwords else self._decode(slices)
            words += [_frame_words(h, w.start) for h, w in zip(hypotheses, batch, strict=True)]
            del hypotheses
        return self._transcript_from_words(merge_windows(windows, words))

    def _transcript_from_words(self, words: Sequence[FrameWord]) -> EngineTranscript:
        """Seconds, segments and text from recording-frame words, computed as NeMo computes them."""
        from nemo.collections.asr.parts.utils.timestamp_utils import get_segment_offsets

        stride = self._model.cfg["preprocessor"]["window_stride"]
        subsampling = self._model.encoder.subsampling_factor

        def seconds(offset: int) -> float:
            return whole_ms(float(offset * stride * subsampling))  # NeMo's process_timestamp_outputs

        decoding = self._model.decoding
        segments = (
            get_segment_offsets(
                [{"word": w.word, "start_offset": w.start, "end_offset": w.end} for w in words],
                segment_delimiter_tokens=getattr(decoding, "segment_seperators", [".", "!", "?"]),
                supported_punctuation=getattr(decoding, "supported_punctuation", None),
                segment_gap_threshold=getattr(decoding, "segment_gap_threshold", None),
            )
            if words
            else []
        )
        return EngineTranscript(
            text=" ".join(w.word for w in words),
            words=[WordTiming(w.word, seconds(w.start), seconds(w.end), w.confidence) for w in words],
            segments=[
                SegmentTiming(str(s["segment"]), seconds(s["start_offset"]), seconds(s["end_offset"]))
                for s in segments
            ],
        )

    def _decode(
        self, waveforms: Sequence[npt.NDArray[np.float32]], boosts: Sequence[HotwordSet] = ()
    ) -> list[Any]:
        """NeMo hypotheses (with timestamps) for one forward pass over `waveforms`.

        With hotwords, each distinct set's boosting tree joins the decoder's multi-model for this pass
        only, and each utterance names its own (or none) through a partial hypothesis.
        """
        import torch

        autocast = (
            torch.autocast("cuda", dtype=self._autocast_dtype)
            if self._autocast_dtype is not None
            else contextlib.nullcontext()
        )
        if self._booster is None or not any(boosts):
            with torch.inference_mode(), autocast:
                hypotheses = self._model.transcribe(
                    list(waveforms), batch_size=len(waveforms), timestamps=True, verbose=False
                )
            return list(hypotheses)
        ids = self._booster.register(boosts)
        self._model.decoding = self._boosted_decoding
        try:
            with torch.inference_mode(), autocast:
                hypotheses = self._model.transcribe(
                    list(waveforms),
                    batch_size=len(waveforms),
                    timestamps=True,
                    verbose=False,
                    partial_hypothesis=self._booster.requests(boosts, ids),
                )
        finally:
            self._model.decoding = self._plain_decoding
            self._booster.unregister(ids.values())
        return list(hypotheses)
