"""A synthesized two-party call recorded in stereo: one party per channel, with crosstalk.

Why: multichannel transcription must keep each party's words on its own channel. A real call
recorder puts each party on a channel but the line leaks: each channel also carries the other
party, quieter (echo, a speakerphone, a shared room). Here party A speaks on channel 0 and party
B on channel 1, each channel also carrying the other party at `crosstalk_db` (-20 dB: a hybrid's
echo return loss is typically 20-30 dB, so -20 dB is the loud end of realistic). Turns alternate,
one of them overlapping the previous one, so the channels' words interleave in time. Speech is
eval.synth's espeak voices, so the words and their times are known exactly.
"""

from __future__ import annotations

import functools
import io
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from eval import synth

SAMPLE_RATE = synth.SAMPLE_RATE
CROSSTALK_DB = -20.0
# The two parties: voices eval.synth's corpus uses, far apart in pitch and accent.
VOICES = (synth.VOICES[0], synth.VOICES[1])


@dataclass(frozen=True)
class CallTurn:
    """One turn of the call: which channel (party) spoke, when (seconds) and what."""

    channel: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class StereoCall:
    """The call's channels (float32 at 16 kHz, equal length) and its reference turns."""

    channels: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
    turns: tuple[CallTurn, ...]

    def words(self, channel: int) -> list[str]:
        """The words spoken on `channel`, in time order."""
        return [word for turn in self.turns if turn.channel == channel for word in turn.text.split()]

    def wav(self) -> bytes:
        """The call as a 16-bit stereo WAV (channels interleaved), as call recorders write it."""
        pcm = (np.clip(np.stack(self.channels, axis=1), -1.0, 1.0) * 32767.0).round().astype("<i2")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as writer:
            writer.setnchannels(2)
            writer.setsampwidth(2)
            writer.setframerate(SAMPLE_RATE)
            writer.writeframes(pcm.tobytes())
        return buffer.getvalue()

    def channel_wav(self, channel: int) -> bytes:
        """One channel alone as a mono WAV (what a single-channel recording of that party is)."""
        pcm = (np.clip(self.channels[channel], -1.0, 1.0) * 32767.0).round().astype("<i2")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(SAMPLE_RATE)
            writer.writeframes(pcm.tobytes())
        return buffer.getvalue()


@functools.cache
def stereo_call(seed: int = 19, num_turns: int = 6, crosstalk_db: float = CROSSTALK_DB) -> StereoCall:
    """A seeded call of `num_turns` alternating turns (A on channel 0 first); turn 3 starts 0.4 s
    before turn 2 ends (overlapped speech). Gaps are 0.5 s; 0.5 s of silence at each end."""
    texts = synth.sentences(seed, num_turns, min_words=4, max_words=7)
    clips = [synth.synthesize(text, VOICES[index % 2]) for index, text in enumerate(texts)]
    gap, overlap = int(0.5 * SAMPLE_RATE), int(0.4 * SAMPLE_RATE)
    placed: list[tuple[int, int]] = []
    cursor = gap
    for index, clip in enumerate(clips):
        start = cursor - overlap if index == 3 else cursor
        placed.append((start, start + len(clip)))
        cursor = max(cursor, start + len(clip)) + gap
    length = cursor
    parties = [np.zeros(length, dtype=np.float32), np.zeros(length, dtype=np.float32)]
    for index, ((start, end), clip) in enumerate(zip(placed, clips, strict=True)):
        parties[index % 2][start:end] += clip
    leak = np.float32(10.0 ** (crosstalk_db / 20.0))
    left = np.clip(parties[0] + leak * parties[1], -1.0, 1.0)
    right = np.clip(parties[1] + leak * parties[0], -1.0, 1.0)
    turns = tuple(
        CallTurn(index % 2, start / SAMPLE_RATE, end / SAMPLE_RATE, text)
        for index, ((start, end), text) in enumerate(zip(placed, texts, strict=True))
    )
    return StereoCall((left.astype(np.float32), right.astype(np.float32)), turns)
