"""Known speakers named in a live stream: a live speaker's label is decided once, when it is first sent.

A live diarizer labels SPEAKER_00, SPEAKER_01, ... by first appearance and never revises a turn
already sent, so a name has to be right the first time. `LiveNaming` sits between the diarizer and
the stream's output: a turn of a speaker not named yet is held (with every later turn, so turns go
out in order and `processed_seconds` never passes a held turn) until its name is decided
(NamingParams: checked from a few seconds of its speech on, named as soon as a known voice no
speaker took reaches the threshold, left unnamed as soon as none comes near, decided by the
threshold alone after `max_speech_s` of speech or `max_hold_s`, or at the stream's end). Its
speech is embedded by the engine's own embedding model (voiceprints.embedder_for: the one that
made the voiceprints); the speakers checked together go through optimal assignment against the
free voices (voiceprints.assign: two speakers never get one name, pairs under the threshold
dropped). A matched speaker is sent under the name from its first turn on; an unmatched one
keeps its SPEAKER_NN for the stream. Names given are never taken back.

Only the audio of held turns is kept (plus the part not decided yet), so memory stays bounded by
the hold, not by the stream's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parakeet.v1 import audio_pb2
from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.diarization.types import Turn
from parakeet_server.diarization.voiceprints import KnownVoice, SpeakerEmbedder, assign

Floats = npt.NDArray[np.float32]
# Audio kept before the decided time: turns decided later start at it (give or take a rounding).
_AUDIO_MARGIN_S = 0.5
# Pieces this close are one turn cut at a step's end.
_JOIN_GAP_S = 0.05


@dataclass(frozen=True)
class NamingParams:
    """When a new speaker's name is decided, by its decided speech so far (seconds).

    A short stretch of speech embeds noisily, and a voice's similarity to its own voiceprint
    grows with the speech heard (development conversations, seeds 7300-7305: ~0.93 at 4 s,
    ~0.94 at 6 s, 0.95-0.98 at 8-13 s). So the speaker is checked from `first_check_s` on, again
    after every `recheck_s` more: named as soon as a free known voice reaches the threshold,
    left SPEAKER_NN as soon as none comes within `clear_margin` of it, and decided by the
    threshold alone at `max_speech_s` of speech, `max_hold_s` of decided time after its first
    turn, or the stream's end.

    `slack`/`margin`: a speaker is also named when its closest free known voice is within `slack`
    of the threshold and leads every other known voice (taken ones too) by `margin`. Three-voice
    ~35 s conversations (offline backend, dev seeds 7500-7511 -> held-out 7600-7611): right names
    61.5 % -> 72.1 %, a not-enrolled voice named 1.4 % -> 1.4 %, two-voice (7400-7404) unchanged
    at 99.5 % / 0 %. A wider slack named more (0.025: 85.8 %) but gave an enrolled name to a
    not-enrolled voice close to it (9.1 %).
    """

    first_check_s: float = 3.0
    recheck_s: float = 1.0
    clear_margin: float = 0.08
    max_speech_s: float = 10.0
    max_hold_s: float = 15.0
    slack: float = 0.01
    margin: float = 0.03


class LiveNaming:
    """One stream's names for its live speakers (see the module docstring)."""

    def __init__(
        self,
        embedder: SpeakerEmbedder,
        voices: Sequence[KnownVoice],
        threshold: float | None = None,
        params: NamingParams | None = None,
    ) -> None:
        self._embedder = embedder
        self._voices = list(voices)
        self._known = np.stack([v.embedding for v in voices]).astype(np.float64) if voices else None
        self._threshold = embedder.default_threshold if threshold is None else threshold
        self.params = params or NamingParams()
        self._names: dict[str, str] = {}  # label -> the label sent (a name or the label itself)
        self._taken: set[int] = set()  # known voice columns given to a speaker
        self._identities: dict[str, audio_pb2.SpeakerIdentity] = {}
        self._checked: dict[str, float] = {}  # label -> its speech at its last check
        self._held: list[Turn] = []
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # stream sample of self._audio[0]

    @property
    def identities(self) -> list[audio_pb2.SpeakerIdentity]:
        """Each speaker sent so far against the known voices, in order of first appearance."""
        return list(self._identities.values())

    def label_of(self, label: str) -> str:
        """What a diarizer label is sent as (itself until named)."""
        return self._names.get(label, label)

    def hear(self, samples: Floats) -> None:
        """The stream's audio, as the diarizer gets it (kept while a turn may still need it)."""
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])

    def held_from(self) -> float | None:
        """The start of the first held turn: the stream's decided time must not pass it."""
        return self._held[0].start if self._held else None

    def pass_on(self, turns: Sequence[Turn], decided: float, final: bool = False) -> list[Turn]:
        """The turns that can go out now, labelled; the rest are held. `decided`: the diarizer's
        decided time; `final`: the stream ended (every held turn goes out)."""
        self._held.extend(turns)
        waiting = self._waiting()
        if waiting:
            self._check(waiting, decided, final)
        out: list[Turn] = []
        while self._held and self._held[0].speaker in self._names:
            turn = self._held.pop(0)
            out.append(Turn(turn.start, turn.end, self._names[turn.speaker]))
        self._drop_audio(decided)
        return out

    def _waiting(self) -> dict[str, tuple[float, float]]:
        """Held speakers not named yet: their speech so far and their first turn's end."""
        found: dict[str, tuple[float, float]] = {}
        for turn in self._held:
            if turn.speaker not in self._names:
                speech, first_end = found.get(turn.speaker, (0.0, turn.end))
                found[turn.speaker] = (speech + turn.end - turn.start, first_end)
        return found

    def _check(self, waiting: dict[str, tuple[float, float]], decided: float, final: bool) -> None:
        """Compare the speakers due a check with the free known voices; name those decided."""
        params = self.params
        due = [
            label
            for label, (speech, _) in waiting.items()
            if final
            or (speech >= params.first_check_s and speech >= self._checked.get(label, 0.0) + params.recheck_s)
            or decided - waiting[label][1] >= params.max_hold_s
        ]
        if not due:
            return
        similarity = self._similarity(due)
        free = [column for column in range(len(self._voices)) if column not in self._taken]
        pairs = assign(similarity[:, free], self._threshold) if free else {}
        given = {free[column] for column in pairs.values()}
        for row, label in enumerate(due):
            speech, first_end = waiting[label]
            self._checked[label] = speech
            best = float(similarity[row, free].max()) if free else -1.0
            forced = final or speech >= params.max_speech_s or decided - first_end >= params.max_hold_s
            if row in pairs:
                self._give(label, free[pairs[row]], similarity[row])
                continue
            column = self._clear_lead(similarity[row], [c for c in free if c not in given])
            if column is not None:
                given.add(column)
                self._give(label, column, similarity[row])
            elif forced or best < self._threshold - params.clear_margin:
                self._give(label, None, similarity[row])

    def _clear_lead(self, similarity: npt.NDArray[np.float64], free: list[int]) -> int | None:
        """The free known voice a speaker is closest to, when it is within `slack` of the threshold
        and leads every other known voice (taken ones too) by `margin`; else None."""
        if not free:
            return None
        column = max(free, key=lambda c: similarity[c])
        best = float(similarity[column])
        others = np.delete(similarity, column)
        second = float(others.max()) if others.size else -1.0
        if best >= self._threshold - self.params.slack and best - second >= self.params.margin:
            return column
        return None

    def _similarity(self, labels: list[str]) -> npt.NDArray[np.float64]:
        """(labels, known voices) cosine similarity of each speaker's held speech (-1: no usable speech)."""
        similarity = np.full((len(labels), len(self._voices)), -1.0)
        if self._known is None:
            return similarity
        offset = self._audio_start / SAMPLE_RATE
        spans = [
            _joined([(t.start - offset, t.end - offset) for t in self._held if t.speaker == label])
            for label in labels
        ]
        for row, vector in enumerate(self._embedder.embed(Waveform(self._audio), spans)):
            if vector is not None:
                similarity[row] = self._known @ vector.astype(np.float64)
        return similarity

    def _give(self, label: str, column: int | None, similarity: npt.NDArray[np.float64]) -> None:
        """Fix the label a speaker is sent under: the known voice `column`'s name, or its own."""
        name = self._voices[column].name if column is not None else label
        if column is not None:
            self._taken.add(column)
        self._names[label] = name
        self._identities[label] = audio_pb2.SpeakerIdentity(
            speaker=name,
            name=name if column is not None else "",
            similarity=round(float(similarity.max()) if similarity.size else -1.0, 4),
        )

    def _drop_audio(self, decided: float) -> None:
        """Keep audio from the first held turn on, else from the decided time (later turns start there)."""
        keep_from = (self._held[0].start if self._held else decided) - _AUDIO_MARGIN_S
        drop = min(self._audio.size, max(0, round(keep_from * SAMPLE_RATE) - self._audio_start))
        if drop:
            self._audio = self._audio[drop:]
            self._audio_start += drop


def _joined(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Consecutive pieces of one turn (a live turn goes out a step at a time) as one span: the
    embedder windows each span on its own, and half-second pieces embed poorly."""
    joined: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if joined and start - joined[-1][1] <= _JOIN_GAP_S:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined
