"""Settings of live streaming transcription, refused early when NeMo would quietly lose words.

NeMo's buffered RNNT/TDT pipeline (see parakeet_server.transcription.streaming) takes its sizes
as float seconds and turns them into samples with `int((chunk + left + right) * 16000)`. A sum
that falls a hair short in binary (0.8 + 5.6 + 0.8 = 7.199999999999999) loses one sample, which
shifts every window by an encoder frame and garbles the first words of a stream. Contexts under
0.32 s each cost 15 % or more of the words. Both failures are silent, so the settings are checked
here, each refusal naming the setting to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import InvalidRequest

# Below these, words are lost at chunk edges (measured: 15 %+ of words under 0.32 s).
MIN_CONTEXT_S = 0.32
MIN_CHUNK_S = 0.16
# One encoder frame of silence (80 ms) would end an utterance inside a word's stop consonant.
MIN_ENDPOINT_SILENCE_MS = 160
MIN_MAX_UTTERANCE_S = 1.0
# Float noise allowed when a size is checked for a whole number of samples or frames.
_TOLERANCE = 1e-6


class StreamingConfigError(InvalidRequest, ValueError):
    """A streaming setting NeMo would accept but that loses words; `setting` names it (a stream's
    own setting, e.g. its endpoint silence, is a field of its request: reason INVALID_FIELD)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}", reason="INVALID_FIELD", metadata={"setting": setting})
        self.setting = setting
        self.detail = message  # without the setting's name, for callers that name it their way


def _samples(setting: str, seconds: float) -> int:
    """`seconds` as a whole number of 16 kHz samples, or a refusal naming `setting`."""
    samples = seconds * SAMPLE_RATE
    if abs(samples - round(samples)) > _TOLERANCE:
        raise StreamingConfigError(
            setting, f"{seconds} s is not a whole number of samples at {SAMPLE_RATE} Hz ({samples:.4f})"
        )
    return round(samples)


@dataclass(frozen=True)
class StreamingConfig:
    """Chunking, endpointing and output of live streams; the defaults are the measured ones.

    Every step decodes `chunk_s` of new audio per stream, seen with `left_context_s` before it and
    `right_context_s` after it (so a word is final `chunk_s + right_context_s` after it is
    spoken, plus the endpoint silence). Left context is the main cost knob: each step re-encodes
    the whole window; 1.6-3.2 s lost no words in the measurements, 6.4 s was the reference.
    """

    chunk_s: float = 0.8
    left_context_s: float = 3.2
    # 1.2 s: over 109 words, 0.8 s right context lost 2 against the batch transcript, 1.2 s one
    # (a 0.24 s word); 1.6 s lost none but is off NeMo's frame grid with a 0.8 s chunk.
    right_context_s: float = 1.2
    # Silence (ms) after which NeMo's endpointer ends an utterance and its words become final.
    endpoint_silence_ms: int = 400
    # An utterance longer than this ends at the next word boundary with a short pause, so a
    # monologue without 400 ms pauses still gets finals (NeMo gives them only at an endpoint).
    max_utterance_s: float = 20.0
    interim_results: bool = True
    # At most this many streams share one forward pass; more wait for the next pass of the step.
    max_batch_streams: int = 16

    def __post_init__(self) -> None:
        if not self.chunk_s >= MIN_CHUNK_S:
            raise StreamingConfigError("chunk_s", f"must be at least {MIN_CHUNK_S} s (got {self.chunk_s} s)")
        for setting, value in (
            ("left_context_s", self.left_context_s),
            ("right_context_s", self.right_context_s),
        ):
            if not value >= MIN_CONTEXT_S:
                raise StreamingConfigError(
                    setting,
                    f"must be at least {MIN_CONTEXT_S} s (got {value} s): shorter context loses words",
                )
        parts = (
            _samples("chunk_s", self.chunk_s)
            + _samples("left_context_s", self.left_context_s)
            + _samples("right_context_s", self.right_context_s)
        )
        # NeMo's own arithmetic (buffer_size_in_secs * sample_rate, truncated) must give the same.
        nemo = int((self.chunk_s + self.left_context_s + self.right_context_s) * SAMPLE_RATE)
        if nemo != parts:
            raise StreamingConfigError(
                "left_context_s",
                f"chunk {self.chunk_s} + left {self.left_context_s} + right {self.right_context_s} s "
                f"truncates to {nemo} samples, not {parts}, which shifts every window by a frame and "
                "garbles words; pick a left context whose sum is exact (e.g. 1.6, 3.2 or 6.4 s)",
            )
        if not self.endpoint_silence_ms >= MIN_ENDPOINT_SILENCE_MS:
            raise StreamingConfigError(
                "endpoint_silence_ms",
                f"must be at least {MIN_ENDPOINT_SILENCE_MS} ms (got {self.endpoint_silence_ms} ms)",
            )
        shortest = max(MIN_MAX_UTTERANCE_S, self.chunk_s + self.right_context_s)
        if not self.max_utterance_s >= shortest:
            raise StreamingConfigError(
                "max_utterance_s", f"must be at least {shortest} s (got {self.max_utterance_s} s)"
            )
        if self.max_batch_streams < 1:
            raise StreamingConfigError(
                "max_batch_streams", f"must be at least 1 (got {self.max_batch_streams})"
            )

    @property
    def chunk_samples(self) -> int:
        """Samples of new audio each step takes from a stream."""
        return round(self.chunk_s * SAMPLE_RATE)

    @property
    def window_samples(self) -> int:
        """Samples in the window each step encodes (left context + chunk + right context)."""
        return round((self.left_context_s + self.chunk_s + self.right_context_s) * SAMPLE_RATE)

    def check_frames(self, frame_s: float, feature_stride_s: float) -> None:
        """Refuse sizes that NeMo's frame arithmetic gets wrong for this model.

        Sizes must be whole encoder frames (`frame_s`, 80 ms for parakeet), and NeMo's own float
        formulas (`ceil(size / frame)`, `int(buffer / feature stride)`) must land on those whole
        numbers: 0.56 / 0.08 = 7.000000000000001 rounds up to 8 frames, and word times then drift
        and chunk edges cut words.
        """
        sizes = (
            ("chunk_s", self.chunk_s),
            ("left_context_s", self.left_context_s),
            ("right_context_s", self.right_context_s),
            ("right_context_s", self.chunk_s + self.right_context_s),
        )
        for setting, value in sizes:
            frames = value / frame_s
            if abs(frames - round(frames)) > _TOLERANCE or math.ceil(frames) != round(frames):
                raise StreamingConfigError(
                    setting,
                    f"{value:g} s is not a whole number of the model's {frame_s:g} s encoder frames "
                    f"as NeMo computes it ({frames!r})",
                )
        total = self.chunk_s + self.left_context_s + self.right_context_s
        features = total / feature_stride_s
        if int(features) != round(features):
            raise StreamingConfigError(
                "left_context_s",
                f"the {total:g} s window is {features!r} feature frames, which NeMo truncates to "
                f"{int(features)}; pick sizes whose sum is exact",
            )
