"""Known speakers by voiceprint: enrol a voice, then name the diarizer's speakers that match one.

Stateless: a voiceprint is an embedding plus the id and version of the model that made it; the
caller keeps it and sends it back. Every engine embeds with its own model (`embedder_for`): the
offline backend with its resemblyzer encoder over its own VAD's speech, pyannote with its
pipeline's embedding model. A voiceprint made by another model or version is refused
(FAILED_PRECONDITION, VOICEPRINT_MISMATCH): comparing embeddings of two models is meaningless, and
a silent wrong name is worse than an error.

Matching is post-hoc, from the turns and the audio: each found speaker's speech is embedded as one
voice, the speakers x known cosine similarities go through optimal assignment
(scipy.optimize.linear_sum_assignment, so two speakers never get one name and the total
similarity is the best), and a pair counts only at or above the threshold. Unmatched speakers
keep SPEAKER_NN.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from parakeet.v1 import audio_pb2
from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.diarization.types import Diarization, Turn

Floats = npt.NDArray[np.float32]
Span = tuple[float, float]

# Less speech than this makes a voiceprint too noisy to trust (the proto says 2-30 s).
MIN_ENROL_SPEECH_S = 2.0
# A request naming more known speakers than this is a mistake, not a meeting.
MAX_KNOWN_SPEAKERS = 100
_SPEAKER_LABEL = re.compile(r"SPEAKER_\d+")
_NAME_LIMIT = 200


class SpeakerEmbedder(Protocol):
    """An engine's own speaker embedding model, as voiceprints need it."""

    @property
    def model(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    @property
    def default_threshold(self) -> float: ...

    def speech(self, waveform: Waveform) -> list[Span]:
        """Speech regions in seconds."""
        ...

    def embed(self, waveform: Waveform, groups: Sequence[Sequence[Span]]) -> list[Floats | None]:
        """Per group of spans, one unit-length embedding of the voice in them; None when they hold
        no usable speech. One call for many groups shares the work on the whole recording."""
        ...


@dataclass(frozen=True)
class KnownVoice:
    """A known speaker ready to match: its name and unit embedding."""

    name: str
    embedding: Floats


@dataclass(frozen=True)
class Identified:
    """The diarization with matched speakers renamed, and each speaker's identity."""

    diarization: Diarization
    identities: list[audio_pb2.SpeakerIdentity]


def _unit(vector: npt.NDArray[np.floating[Any]]) -> Floats | None:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm <= 1e-12:
        return None
    return (np.asarray(vector, dtype=np.float64) / norm).astype(np.float32)


def _samples(spans: Sequence[Span], length: int) -> list[tuple[int, int]]:
    """Spans in seconds -> (start, end) sample indices inside [0, length), empty ones dropped."""
    result = []
    for start, end in spans:
        first, last = max(0, round(start * SAMPLE_RATE)), min(length, round(end * SAMPLE_RATE))
        if last > first:
            result.append((first, last))
    return result


@cache
def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class OfflineEmbedder:
    """The offline backend's silero-vad and resemblyzer encoder (read from the loaded engine)."""

    model = "resemblyzer"
    # Measured (eval/voiceprints.py): a found speaker against its own voice's voiceprint >= 0.95,
    # against another voice's <= 0.94 (the closest pair of the ten synthetic voices).
    default_threshold = 0.945

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    @property
    def model_version(self) -> str:
        from parakeet_server.diarization.offline_engine import _package_file

        return f"pretrained.pt:sha256:{_file_digest(str(_package_file('resemblyzer', 'pretrained.pt')))}"

    def speech(self, waveform: Waveform) -> list[Span]:
        import torch

        engine = self._engine
        samples = np.ascontiguousarray(waveform.samples, dtype=np.float32)
        with engine._lock, torch.inference_mode():
            regions = engine._speech_regions(samples, lambda: None)
        return [(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in regions]

    def embed(self, waveform: Waveform, groups: Sequence[Sequence[Span]]) -> list[Floats | None]:
        import torch

        from parakeet_server.diarization.offline_engine import _windows

        engine = self._engine
        samples = np.ascontiguousarray(waveform.samples, dtype=np.float32)
        regions = [_samples(spans, samples.size) for spans in groups]
        every = sorted({region for group in regions for region in group})
        if not every:
            return [None] * len(groups)
        result: list[Floats | None] = []
        with engine._lock, torch.inference_mode():
            mels = engine._mel_frames(samples, every)  # one level for the whole recording's speech
            for group in regions:
                windows = _windows(group, engine.params)
                inside = windows.ends <= mels.shape[0]
                windows = type(windows)(windows.starts[inside], windows.ends[inside])
                if windows.starts.size == 0:
                    result.append(None)
                    continue
                embeddings = engine._embed(mels, windows, lambda: None)
                result.append(_unit(embeddings.astype(np.float64).mean(axis=0)))
        return result


class PyannoteEmbedder:
    """A pyannote pipeline's own embedding model (WeSpeaker for speaker-diarization-3.1)."""

    default_threshold = 0.5
    _CHUNK_S = 10.0

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._version: str | None = None

    @property
    def _pipeline(self) -> Any:
        return self._engine.pyannote_pipeline

    @property
    def model(self) -> str:
        named = getattr(self._pipeline, "embedding", None)
        return named if isinstance(named, str) else type(self._pipeline._embedding).__name__

    @property
    def model_version(self) -> str:
        """A digest of the embedding model's weights: two copies of one model agree, any retrain differs."""
        if self._version is None:
            module = getattr(self._pipeline._embedding, "model_", None)
            digest = hashlib.sha256(str(self.model).encode())
            if module is not None and hasattr(module, "state_dict"):
                for key, value in sorted(module.state_dict().items()):
                    digest.update(key.encode())
                    digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            self._version = f"sha256:{digest.hexdigest()[:16]}"
        return self._version

    def speech(self, waveform: Waveform) -> list[Span]:
        result = self._engine.diarize(waveform)
        return [(turn.start, turn.end) for turn in result.turns]

    def embed(self, waveform: Waveform, groups: Sequence[Sequence[Span]]) -> list[Floats | None]:
        return [self._embed_one(waveform, spans) for spans in groups]

    def _embed_one(self, waveform: Waveform, spans: Sequence[Span]) -> Floats | None:
        import torch

        samples = np.ascontiguousarray(waveform.samples, dtype=np.float32)
        mask = np.zeros(samples.size, dtype=np.float32)
        for first, last in _samples(spans, samples.size):
            mask[first:last] = 1.0
        chunk = round(self._CHUNK_S * SAMPLE_RATE)
        total = np.zeros(0, dtype=np.float64)
        weight = 0.0
        embedding = self._pipeline._embedding
        for start in range(0, samples.size, chunk):
            piece, weights = samples[start : start + chunk], mask[start : start + chunk]
            speech = float(weights.sum()) / SAMPLE_RATE
            if speech < 0.5:
                continue
            if piece.size < chunk:  # one length for every call: pad the last piece, masked out
                piece = np.pad(piece, (0, chunk - piece.size))
                weights = np.pad(weights, (0, chunk - weights.size))
            frames = torch.from_numpy(weights[:: SAMPLE_RATE // 100].copy())[None]
            with self._engine._lock, torch.inference_mode():
                found = np.asarray(embedding(torch.from_numpy(piece)[None, None], masks=frames), np.float64)
            if not np.all(np.isfinite(found)):
                continue
            vector = found.reshape(-1)
            total = vector * speech if total.size == 0 else total + vector * speech
            weight += speech
        return _unit(total) if weight > 0 else None


def embedder_for(engine: Any) -> SpeakerEmbedder:
    """The embedding model of the engine that answers (the fallback's active one)."""
    from parakeet_server.diarization.offline_engine import OfflineEngine
    from parakeet_server.diarization.pyannote_engine import PyannoteEngine

    active = getattr(engine, "active", engine)
    if isinstance(active, OfflineEngine):
        if not active.loaded:
            raise PreconditionFailed(
                "the offline diarization backend is not loaded", reason="MODEL_NOT_LOADED"
            )
        return OfflineEmbedder(active)
    if isinstance(active, PyannoteEngine):
        if not active.loaded:
            raise PreconditionFailed("the diarization pipeline is not loaded", reason="MODEL_NOT_LOADED")
        return PyannoteEmbedder(active)
    raise PreconditionFailed(
        f"the diarization engine {getattr(engine, 'name', type(engine).__name__)} has no speaker "
        "embedding model for voiceprints",
        reason="FAILED_PRECONDITION",
    )


def enroll(embedder: SpeakerEmbedder, waveform: Waveform, what: str = "the audio") -> audio_pb2.Voiceprint:
    """A voiceprint of the one voice in `waveform`; AUDIO_TOO_SHORT under MIN_ENROL_SPEECH_S of speech."""
    spans = embedder.speech(waveform)
    speech_s = sum(end - start for start, end in spans)
    if speech_s < MIN_ENROL_SPEECH_S:
        raise InvalidRequest(
            f"{what} holds {speech_s:.1f} s of speech; a voiceprint needs at least "
            f"{MIN_ENROL_SPEECH_S:g} s (10-20 s of one speaker alone works best)",
            reason="AUDIO_TOO_SHORT",
        )
    embedding = embedder.embed(waveform, [spans])[0]
    if embedding is None:
        raise InvalidRequest(f"{what} holds no usable speech for a voiceprint", reason="AUDIO_TOO_SHORT")
    return audio_pb2.Voiceprint(
        embedding=embedding.tolist(),
        model=embedder.model,
        model_version=embedder.model_version,
        speech_seconds=round(speech_s, 3),
    )


def check_names(known: Sequence[audio_pb2.KnownSpeaker]) -> None:
    """Names are present, unique, not SPEAKER_NN (they would clash with unmatched labels)."""
    if len(known) > MAX_KNOWN_SPEAKERS:
        raise InvalidRequest(
            f"at most {MAX_KNOWN_SPEAKERS} known_speakers per request (got {len(known)})",
            reason="INVALID_FIELD",
        )
    seen: set[str] = set()
    for index, speaker in enumerate(known):
        name = speaker.name.strip()
        where = f"known_speakers[{index}]"
        if not name:
            raise InvalidRequest(
                f"{where}.name is empty; give each known speaker a name", reason="INVALID_FIELD"
            )
        if len(name) > _NAME_LIMIT:
            raise InvalidRequest(f"{where}.name is over {_NAME_LIMIT} characters", reason="INVALID_FIELD")
        if _SPEAKER_LABEL.fullmatch(name):
            raise InvalidRequest(
                f"{where}.name {name!r} looks like an unmatched speaker's label; pick another name",
                reason="INVALID_FIELD",
            )
        if name in seen:
            raise InvalidRequest(
                f"{where}.name {name!r} is given twice; names must be unique", reason="INVALID_FIELD"
            )
        seen.add(name)
        if speaker.WhichOneof("voice") is None:
            raise InvalidRequest(
                f"{where} ({name}) has neither a voiceprint nor reference audio", reason="INVALID_FIELD"
            )


def check_threshold(threshold: float | None) -> None:
    """A threshold is a cosine similarity: within [-1, 1]."""
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InvalidRequest(
            f"speaker_match_threshold must be within [-1, 1] (a cosine similarity), got {threshold}",
            reason="INVALID_FIELD",
        )


def voice_of(embedder: SpeakerEmbedder, voiceprint: audio_pb2.Voiceprint, where: str) -> Floats:
    """The voiceprint's embedding, if this model made it: else VOICEPRINT_MISMATCH."""
    if voiceprint.model != embedder.model or voiceprint.model_version != embedder.model_version:
        raise PreconditionFailed(
            f"{where} was made by {voiceprint.model or '?'} {voiceprint.model_version or '?'}, but this "
            f"server embeds voices with {embedder.model} {embedder.model_version}; enrol the speaker "
            "again on this server (or send reference audio)",
            reason="VOICEPRINT_MISMATCH",
        )
    vector = _unit(np.asarray(voiceprint.embedding, dtype=np.float64))
    if vector is None:
        raise InvalidRequest(f"{where} has an empty or zero embedding", reason="INVALID_FIELD")
    return vector


def known_voices(
    embedder: SpeakerEmbedder,
    known: Sequence[audio_pb2.KnownSpeaker],
    load: Callable[[audio_pb2.Audio], Waveform],
) -> list[KnownVoice]:
    """Each known speaker's unit embedding: voiceprints checked, reference audio enrolled now."""
    check_names(known)
    voices = []
    for index, speaker in enumerate(known):
        where = f"known_speakers[{index}] ({speaker.name.strip()})"
        if speaker.WhichOneof("voice") == "voiceprint":
            vector = voice_of(embedder, speaker.voiceprint, f"the voiceprint of {where}")
        else:
            made = enroll(embedder, load(speaker.reference), f"the reference audio of {where}")
            vector = np.asarray(made.embedding, dtype=np.float32)
        voices.append(KnownVoice(speaker.name.strip(), vector))
    return voices


def assign(similarity: npt.NDArray[np.float64], threshold: float) -> dict[int, int]:
    """Speaker row -> known column by optimal assignment; pairs under `threshold` dropped."""
    from scipy.optimize import linear_sum_assignment

    if similarity.size == 0:
        return {}
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, columns, strict=True) if similarity[r, c] >= threshold}


# A turn of a named speaker moves to a known voice no speaker took only when it is this much
# closer to that voice than to its speaker's: a merged cluster split back by voiceprint.
TURN_MARGIN = 0.02
# Turns shorter than this embed too noisily to move.
MIN_TURN_S = 1.0


def identify(
    embedder: SpeakerEmbedder,
    waveform: Waveform,
    diarization: Diarization,
    voices: Sequence[KnownVoice],
    threshold: float | None = None,
) -> Identified:
    """Names for the diarization's speakers that match a known voice; the rest keep SPEAKER_NN.

    Speakers first: each found speaker's whole speech against every known voice, optimal
    assignment. Then turns: clustering sometimes merges two close voices into one speaker, so a
    turn of a named speaker whose own voice matches a known voice that no speaker took (at the
    threshold, and TURN_MARGIN closer than to its speaker's name) is given that name. A name still
    belongs to one group of turns only; unnamed speakers' turns never move.
    """
    limit = embedder.default_threshold if threshold is None else threshold
    speakers = list(dict.fromkeys(turn.speaker for turn in diarization.turns))
    if not voices:
        return Identified(diarization, [])
    known = np.stack([voice.embedding for voice in voices]).astype(np.float64)
    turns = diarization.turns
    groups = [[(t.start, t.end) for t in turns if t.speaker == speaker] for speaker in speakers]
    groups += [[(t.start, t.end)] for t in turns]
    vectors = embedder.embed(waveform, groups)
    similarity = np.full((len(vectors), len(voices)), -1.0)
    for row, vector in enumerate(vectors):
        if vector is not None:
            similarity[row] = known @ vector.astype(np.float64)
    by_speaker, by_turn = similarity[: len(speakers)], similarity[len(speakers) :]
    pairs = assign(by_speaker, limit)
    names = {speakers[row]: voices[column].name for row, column in pairs.items()}
    column_of = {speakers[row]: column for row, column in pairs.items()}
    free = [column for column in range(len(voices)) if column not in pairs.values()]
    labels = [names.get(turn.speaker, turn.speaker) for turn in turns]
    if free:
        for index, turn in enumerate(turns):
            own = column_of.get(turn.speaker)
            if own is None or turn.end - turn.start < MIN_TURN_S:
                continue
            best = max(free, key=lambda column: by_turn[index, column])
            if by_turn[index, best] >= limit and by_turn[index, best] >= by_turn[index, own] + TURN_MARGIN:
                labels[index] = voices[best].name
    identities = [
        audio_pb2.SpeakerIdentity(
            speaker=names.get(speaker, speaker),
            name=names.get(speaker, ""),
            similarity=round(float(by_speaker[row].max()), 4),
        )
        for row, speaker in enumerate(speakers)
    ]
    moved = sorted({label for label in labels if label not in names.values() and label not in speakers})
    for name in moved:  # voices found only turn by turn
        column = next(c for c in free if voices[c].name == name)
        rows = [i for i, label in enumerate(labels) if label == name]
        identities.append(
            audio_pb2.SpeakerIdentity(
                speaker=name, name=name, similarity=round(float(by_turn[rows, column].mean()), 4)
            )
        )
    relabelled = tuple(Turn(t.start, t.end, label) for t, label in zip(turns, labels, strict=True))
    count = len(set(labels))
    return Identified(replace(diarization, turns=relabelled, num_speakers=count), identities)
