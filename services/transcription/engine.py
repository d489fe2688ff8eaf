"""The transcription engine: the only code that touches NeMo.

Loads parakeet-tdt-0.6b-v2 (or any NeMo RNNT/TDT checkpoint) from a `.nemo` file, a local
directory or a Hugging Face id (local caches first, see services.core.model_store), puts it in
eval mode on the GPU when there is one, and transcribes batches of in-memory 16 kHz waveforms
with TDT word and segment timestamps. Recordings longer than `local_attention_after_s` switch the
encoder to local attention for their pass, which keeps memory linear in length (an hour fits).
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

from services.core.audio import SAMPLE_RATE
from services.core.errors import PreconditionFailed
from services.core.model_store import RepoFile, looks_like_repo_id, resolve

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nvidia/parakeet-tdt-0.6b-v2"
FULL_ATTENTION = "rel_pos"  # parakeet's own setting, restored after a long recording
LOCAL_ATTENTION = "rel_pos_local_attn"


@dataclass(frozen=True)
class TranscriptionEngineConfig:
    """What to load and how to run it."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on a GPU that supports it, else fp32
    local_attention_after_s: float = 5 * 60.0  # full attention is O(T^2) in memory; see docs/deploy.md
    local_attention_context: int = 256
    word_confidence: bool = True


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
            start=float(entry["start"]),
            end=float(entry["end"]),
            confidence=float(confidences[index]) if index < len(confidences) else None,
        )
        for index, entry in enumerate(raw_words)
    ]
    segments = [
        SegmentTiming(text=str(entry["segment"]), start=float(entry["start"]), end=float(entry["end"]))
        for entry in stamps.get("segment", [])
    ]
    return EngineTranscript(text=str(hypothesis.text), words=words, segments=segments)


class TranscriptionEngine:
    """A loaded NeMo ASR model. Not thread-safe: one thread (the micro-batcher's) calls it."""

    def __init__(self, config: TranscriptionEngineConfig | None = None) -> None:
        self.config = config or TranscriptionEngineConfig()
        self._model: Any = None
        self._device = "cpu"
        self._autocast_dtype: Any = None

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
        model.change_decoding_strategy(decoding, verbose=False)
        self._autocast_dtype = self._pick_precision(torch)
        self._model = model

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

    @contextlib.contextmanager
    def _attention(self, local: bool) -> Iterator[None]:
        if not local:
            yield
            return
        encoder_cfg = self._model.cfg.encoder
        attention = encoder_cfg.get("self_attention_model", FULL_ATTENTION)
        context = list(encoder_cfg.get("att_context_size", [-1, -1]))
        chunking = int(encoder_cfg.get("subsampling_conv_chunking_factor", 1))
        size = self.config.local_attention_context
        self._model.change_attention_model(LOCAL_ATTENTION, [size, size], update_config=False)
        self._model.change_subsampling_conv_chunking_factor(1, update_config=False)
        try:
            yield
        finally:
            self._model.change_attention_model(attention, context, update_config=False)
            self._model.change_subsampling_conv_chunking_factor(chunking, update_config=False)

    def transcribe(self, waveforms: Sequence[npt.NDArray[np.float32]]) -> list[EngineTranscript]:
        """Transcribe 16 kHz mono waveforms; short ones in one batch, long ones one at a time."""
        if self._model is None:
            raise PreconditionFailed("the transcription model is not loaded")
        limit = self.config.local_attention_after_s * SAMPLE_RATE
        results: list[EngineTranscript | None] = [None] * len(waveforms)
        short = [i for i, wave in enumerate(waveforms) if len(wave) <= limit]
        if short:
            for index, transcript in zip(
                short, self._run([waveforms[i] for i in short], local=False), strict=True
            ):
                results[index] = transcript
        for index in (i for i, wave in enumerate(waveforms) if len(wave) > limit):
            results[index] = self._run([waveforms[index]], local=True)[0]
        return [result for result in results if result is not None]

    def _run(self, waveforms: Sequence[npt.NDArray[np.float32]], local: bool) -> list[EngineTranscript]:
        import torch

        autocast = (
            torch.autocast("cuda", dtype=self._autocast_dtype)
            if self._autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with self._attention(local), torch.inference_mode(), autocast:
            hypotheses = self._model.transcribe(
                list(waveforms), batch_size=len(waveforms), timestamps=True, verbose=False
            )
        return [_hypothesis_to_transcript(hypothesis) for hypothesis in hypotheses]
