"""Two voices talking over each other for two seconds: what overlapped-speech tests run on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.synth import VOICES, synthesize
from parakeet_server.core.audio import SAMPLE_RATE


@dataclass(frozen=True)
class Crosstalk:
    """The mix and each voice's span in seconds; B starts 2 s before A ends."""

    audio: np.ndarray
    a: tuple[float, float]
    b: tuple[float, float]


def crosstalk() -> Crosstalk:
    first = synthesize("the quick brown fox jumps over the lazy dog and then walks to the market", VOICES[0])
    second = synthesize("good morning teacher please call my sister back later today", VOICES[1])
    lead = SAMPLE_RATE // 2
    start_b = lead + first.size - 2 * SAMPLE_RATE
    audio = np.zeros(start_b + second.size + SAMPLE_RATE // 2, dtype=np.float32)
    audio[lead : lead + first.size] += first
    audio[start_b : start_b + second.size] += second
    return Crosstalk(
        audio,
        (lead / SAMPLE_RATE, (lead + first.size) / SAMPLE_RATE),
        (start_b / SAMPLE_RATE, (start_b + second.size) / SAMPLE_RATE),
    )
