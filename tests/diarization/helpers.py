"""Test audio and the reference the services are compared with: a direct pyannote call."""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE, Waveform, decode_bytes

# Four kinds of sound take turns, so the segmentation (which depends on the audio) switches.
# 12 s: three overlapping 10 s segmentation windows, enough embeddings for 3 clusters.
PATTERN = ("noise", "tone", "chirp", "square") * 2
SECONDS_EACH = 1.5


def _sound(kind: str, samples: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(samples) / SAMPLE_RATE
    if kind == "tone":
        return 0.5 * np.sin(2 * np.pi * 220.0 * t)
    if kind == "noise":
        return 0.3 * rng.standard_normal(samples)
    if kind == "chirp":
        return 0.5 * np.sin(2 * np.pi * (300.0 + 200.0 * t) * t)
    if kind == "square":
        return 0.4 * np.sign(np.sin(2 * np.pi * 150.0 * t))
    raise ValueError(kind)


def synthesize(
    pattern: tuple[str, ...] = PATTERN, seconds_each: float = SECONDS_EACH, seed: int = 1
) -> bytes:
    """A 16 kHz mono 16-bit WAV file of the sounds in `pattern`, one after the other."""
    rng = np.random.default_rng(seed)
    samples = np.concatenate([_sound(kind, int(seconds_each * SAMPLE_RATE), rng) for kind in pattern])
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def decoded(wav: bytes) -> Waveform:
    """The waveform every service path decodes the file to."""
    return decode_bytes(wav, "wav")


def direct_turns(pipeline: Any, waveform: Waveform, exclusive: bool = False, **counts: Any) -> list[Any]:
    """Call the pyannote pipeline itself; rename speakers by first appearance, round to ms and
    clip to the audio's end (the window is zero-padded past it).

    What every service path must return for the same audio and options.
    """
    import torch

    output = pipeline(
        {"waveform": torch.from_numpy(waveform.samples)[None], "sample_rate": SAMPLE_RATE}, **counts
    )
    annotation = output.exclusive_speaker_diarization if exclusive else output.speaker_diarization
    names: dict[str, str] = {}
    turns = []
    for segment, _track, label in annotation.itertracks(yield_label=True):
        start, end = round(segment.start, 3), min(round(segment.end, 3), round(waveform.duration, 3))
        if end <= start:
            continue
        if label not in names:
            names[label] = f"SPEAKER_{len(names):02d}"
        turns.append((start, end, names[label]))
    return turns


def turns_of(segments: Any) -> list[Any]:
    """(start, end, speaker) of proto SpeakerTurns or of JSON dicts."""
    return [
        (s["start"], s["end"], s["speaker"]) if isinstance(s, dict) else (s.start, s.end, s.speaker)
        for s in segments
    ]
