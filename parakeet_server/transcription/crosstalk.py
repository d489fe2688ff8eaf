"""Crosstalk: words one channel of a call only overheard from another channel are dropped.

Why: in a call recording each channel carries its own party and, quieter, the other one (line
echo, a headset hearing the earpiece, a shared room). A recogniser hears that leaked speech
clearly in the quiet channel's pauses (its features are level-normalised), so without this the
other party's words show up twice, once on each channel. A word is kept unless, over its time
span, its own channel is more than `CROSSTALK_MARGIN_DB` quieter than the loudest other
channel: leaked speech sits 20-40 dB below the party who said it, while a party speaking over
the other (real overlapped speech) is within a few dB of them, and a quiet line rarely 15 dB
below the other party.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from parakeet.render import join_words, words_by_segment
from parakeet.v1 import audio_pb2
from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.times import whole_ms

CROSSTALK_MARGIN_DB = 15.0
# Word times are the model's (80 ms frames): the span measured is widened by this on each side.
_PAD_S = 0.04
_FLOOR = 1e-10  # mean square of digital silence, so that log10 never sees 0


def _level_db(samples: npt.NDArray[np.float32], start: float, end: float) -> float:
    """Mean power of `samples` over [start, end] (padded), in dB relative to full scale."""
    low = min(len(samples), max(0, int((start - _PAD_S) * SAMPLE_RATE)))
    high = min(len(samples), max(low + 1, int((end + _PAD_S) * SAMPLE_RATE)))
    span = samples[low:high].astype(np.float64)
    return float(10.0 * np.log10(float(np.mean(span * span)) + _FLOOR)) if span.size else -100.0


def is_crosstalk(
    word: audio_pb2.Word, channel: int, channels: Sequence[npt.NDArray[np.float32]], margin_db: float
) -> bool:
    """Whether `word`, heard on `channel`, is more than `margin_db` quieter there than on another channel."""
    own = _level_db(channels[channel], word.start, word.end)
    others = [
        _level_db(samples, word.start, word.end) for index, samples in enumerate(channels) if index != channel
    ]
    return bool(others) and own < max(others) - margin_db


def drop_crosstalk(
    channel: int,
    words: Sequence[audio_pb2.Word],
    segments: Sequence[audio_pb2.Segment],
    channels: Sequence[npt.NDArray[np.float32]],
    margin_db: float = CROSSTALK_MARGIN_DB,
) -> tuple[list[audio_pb2.Word], list[audio_pb2.Segment]]:
    """One channel's words and segments without the words it only overheard. A segment that
    lost words is rebuilt from the rest (text joined, times from them); one left with none goes;
    a segment that had no words to begin with stays."""
    dropped = {index for index, word in enumerate(words) if is_crosstalk(word, channel, channels, margin_db)}
    if not dropped:
        return list(words), list(segments)
    kept_ids = {id(word) for index, word in enumerate(words) if index not in dropped}
    kept_segments: list[audio_pb2.Segment] = []
    for segment, group in zip(segments, words_by_segment(segments, words), strict=True):
        remaining = [word for word in group if id(word) in kept_ids]
        if len(remaining) == len(group):
            kept_segments.append(segment)
        elif remaining:
            kept_segments.append(
                audio_pb2.Segment(
                    start=whole_ms(remaining[0].start),
                    end=whole_ms(max(max(word.start, word.end) for word in remaining)),
                    text=join_words(remaining),
                )
            )
    return [word for index, word in enumerate(words) if index not in dropped], kept_segments


# Frames `gate_crosstalk` measures and silences: long enough for a stable level, short enough
# not to swallow a back-channel.
_GATE_FRAME_S = 0.1


def gate_crosstalk(
    channels: Sequence[npt.NDArray[np.float32]], margin_db: float = CROSSTALK_MARGIN_DB
) -> list[npt.NDArray[np.float32]]:
    """Copies of the channels with every 100 ms frame silenced where the channel is more than
    `margin_db` quieter than another: what a diarizer should hear of one party's channel. Left
    in, the other party's leaked voice is a speaker of its own in every channel."""
    if len(channels) < 2:
        return [np.array(samples, dtype=np.float32) for samples in channels]
    frame = int(_GATE_FRAME_S * SAMPLE_RATE)
    length = min(len(samples) for samples in channels)
    count = -(-length // frame)
    padded = np.zeros((len(channels), count * frame), dtype=np.float64)
    for index, samples in enumerate(channels):
        padded[index, :length] = samples[:length]
    power = (padded.reshape(len(channels), count, frame) ** 2).mean(axis=2)
    level = 10.0 * np.log10(power + _FLOOR)
    gated: list[npt.NDArray[np.float32]] = []
    for index, samples in enumerate(channels):
        others = np.delete(level, index, axis=0).max(axis=0)
        silenced = np.repeat(level[index] < others - margin_db, frame)[: len(samples)]
        copy = np.array(samples, dtype=np.float32)
        copy[: len(silenced)][silenced] = 0.0
        gated.append(copy)
    return gated
