"""Known speakers by voiceprint: enrol a voice, then name the diarizer's speakers that match one.

Stateless: a voiceprint is an embedding plus the id and version of the model that made it; the
caller keeps it and sends it back. Every engine embeds with its own model (`embedder_for`): the
offline backend with CAM++ (campplus.py) and its resemblyzer encoder over its own VAD's speech,
pyannote with its pipeline's embedding model. A voiceprint made by another model or version is refused
(FAILED_PRECONDITION, VOICEPRINT_MISMATCH): comparing embeddings of two models is meaningless, and
a silent wrong name is worse than an error.

Matching is from the turns and the audio, in two steps: each found speaker's speech is embedded as
one voice, the speakers x known cosine similarities go through optimal assignment
(scipy.optimize.linear_sum_assignment, so two speakers never get one name and the total
similarity is the best), a pair counting only at or above the threshold; then pieces of turns
(units) that clearly match another known voice take its name, which undoes part of the
clustering's merges and splits (`relabel`); then an unnamed speaker's units that agree on one
free known voice are scored together (`name_groups`). Unmatched speech keeps SPEAKER_NN.
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
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed, ServiceError
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
    """The offline backend's speaker embeddings for voiceprints, over its own silero-vad speech:
    CAM++ (diarization/campplus.py) and the backend's resemblyzer encoder, each unit embedding
    weighing half (campplus.fuse). Together they separate the development voices better
    than either alone (docs/accuracy.md). The subclasses embed with one of them (measured, not
    adopted); each is its own `model`, so a voiceprint made by one is refused by another
    (VOICEPRINT_MISMATCH)."""

    model = "campplus+resemblyzer"
    # Calibrated with eval.voiceprints on seeds 7100-7129 (docs/accuracy.md): 0.93 named a voice
    # not enrolled for 13 % of its words, 0.94 named fewer right at the same 3 %.
    default_threshold = 0.935
    _uses: tuple[str, ...] = ("campplus", "resemblyzer")

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    @property
    def model_version(self) -> str:
        from parakeet_server.diarization.campplus import weights_path
        from parakeet_server.diarization.offline_engine import _package_file

        files = {
            "campplus": lambda: f"campplus_cn_en_common.pt:sha256:{_file_digest(weights_path())}",
            "resemblyzer": lambda: (
                f"pretrained.pt:sha256:{_file_digest(str(_package_file('resemblyzer', 'pretrained.pt')))}"
            ),
        }
        return "+".join(files[name]() for name in self._uses)

    def speech(self, waveform: Waveform) -> list[Span]:
        import torch

        engine = self._engine
        samples = np.ascontiguousarray(waveform.samples, dtype=np.float32)
        with engine._lock, torch.inference_mode():
            regions = engine._speech_regions(samples, lambda: None)
        return [(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in regions]

    def embed(self, waveform: Waveform, groups: Sequence[Sequence[Span]]) -> list[Floats | None]:
        samples = np.ascontiguousarray(waveform.samples, dtype=np.float32)
        regions = [_samples(spans, samples.size) for spans in groups]
        found = [self._campplus if name == "campplus" else self._resemblyzer for name in self._uses]
        if len(found) == 1:
            return found[0](samples, regions)
        from parakeet_server.diarization.campplus import fuse

        parts = [embed(samples, regions) for embed in found]
        return [
            fuse(vectors) if all(v is not None for v in vectors) else None
            for vectors in zip(*parts, strict=True)
        ]

    def _campplus(self, samples: Floats, regions: list[list[tuple[int, int]]]) -> list[Floats | None]:
        from parakeet_server.diarization.campplus import encoder

        engine = self._engine
        with engine._lock:
            return encoder(engine._torch_device).embed(samples, regions)

    def _resemblyzer(self, samples: Floats, regions: list[list[tuple[int, int]]]) -> list[Floats | None]:
        import torch

        from parakeet_server.diarization.offline_engine import _windows

        engine = self._engine
        every = sorted({region for group in regions for region in group})
        if not every:
            return [None] * len(regions)
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


class CamPlusPlusEmbedder(OfflineEmbedder):
    """CAM++ alone (dev seeds 7100-7129: 87.6 % right, 3.4 % named; the fusion 89.3 %, 3.4 %)."""

    model = "campplus"
    default_threshold = 0.93
    _uses = ("campplus",)


class ResemblyzerEmbedder(OfflineEmbedder):
    """The offline backend's resemblyzer encoder alone (its voiceprints before CAM++)."""

    model = "resemblyzer"
    default_threshold = 0.94
    _uses = ("resemblyzer",)


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
        """The union of the pipeline's turns: they overlap (several speakers at once), and
        overlapping time must count once in speech_seconds and AUDIO_TOO_SHORT."""
        result = self._engine.diarize(waveform)
        merged: list[Span] = []
        for start, end in sorted((turn.start, turn.end) for turn in result.turns):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

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
            made = enroll(
                embedder, _load_reference(load, speaker.reference, where), f"the reference audio of {where}"
            )
            vector = np.asarray(made.embedding, dtype=np.float32)
        voices.append(KnownVoice(speaker.name.strip(), vector))
    return voices


def _load_reference(
    load: Callable[[audio_pb2.Audio], Waveform], reference: audio_pb2.Audio, where: str
) -> Waveform:
    """The reference audio decoded; a failure says whose reference it was (same class and reason)."""
    try:
        return load(reference)
    except ServiceError as error:
        raise type(error)(
            f"the reference audio of {where}: {error.message}", reason=error.reason, metadata=error.metadata
        ) from error


def assign(similarity: npt.NDArray[np.float64], threshold: float) -> dict[int, int]:
    """Speaker row -> known column by optimal assignment; pairs under `threshold` dropped."""
    from scipy.optimize import linear_sum_assignment

    if similarity.size == 0:
        return {}
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, columns, strict=True) if similarity[r, c] >= threshold}


# Identification is by unit as well as by speaker: every found turn is cut into equal pieces of at
# most UNIT_S seconds, each embedded and scored against the known voices. Calibrated with
# eval.voiceprints on the development seeds 7100-7129 (figures in docs/accuracy.md).
UNIT_S = 3.0
# Units shorter than this embed too noisily to move.
MIN_UNIT_S = 1.0
# A unit's best known voice must reach the speaker-level threshold minus this (single units score
# lower than a whole speaker's speech against its own voice).
UNIT_THRESHOLD_DROP = 0.04
# How far a unit's best known voice must lead the second best to name a unit of an unnamed speaker
# (CAM++ + resemblyzer on seeds 7100-7129: 0.05 names more right than 0.15, 89.3 % vs 87.0 %, at
# about the same share of a non-enrolled voice's words named, 3.4 % vs 3.2 %); a named speaker's unit moves to another known voice as soon
# as that voice scores best.
UNNAMED_UNIT_MARGIN = 0.05
NAMED_UNIT_MARGIN = 0.0
# A group of still-unnamed units (one found speaker's units with one best known voice that no
# unit carries yet) is embedded jointly and takes that voice when the joint similarity reaches the
# threshold plus this. Calibrated on seeds 7100-7129: at + 0.0 a non-enrolled voice's group
# (0.936-0.94) took a name; + 0.01 names none there and leaves the development figures unchanged.
GROUP_MARGIN = 0.01


def _units(turns: Sequence[Turn], longest: float) -> list[Turn]:
    """Each turn cut into equal pieces of at most `longest` seconds (one piece when shorter)."""
    result = []
    for turn in turns:
        pieces = max(1, int(np.ceil((turn.end - turn.start) / longest - 1e-9)))
        step = (turn.end - turn.start) / pieces
        for index in range(pieces):
            start = round(turn.start + index * step, 3)
            end = turn.end if index == pieces - 1 else round(turn.start + (index + 1) * step, 3)
            result.append(Turn(start, end, turn.speaker))
    return result


def relabel(
    units: Sequence[Turn],
    similarity: npt.NDArray[np.float64],
    names: dict[str, int],
    threshold: float,
    min_unit_s: float = MIN_UNIT_S,
) -> list[int | None]:
    """The known voice (column) each unit carries, None where it keeps its speaker's SPEAKER_NN.

    `similarity` is units x known voices (-1 for a unit with no usable speech); `names` maps the
    speakers that matched as a whole to their voice. A unit takes its best voice when that voice
    scores at least `threshold` - UNIT_THRESHOLD_DROP and leads the second best by the margin for
    its speaker (NAMED_UNIT_MARGIN when its speaker is named, UNNAMED_UNIT_MARGIN when not);
    otherwise it keeps its speaker's identity.
    """
    result: list[int | None] = []
    for row, unit in enumerate(units):
        own = names.get(unit.speaker)
        scores = similarity[row]
        if scores.size == 0 or unit.end - unit.start < min_unit_s or scores.max() < -0.999:
            result.append(own)
            continue
        order = np.argsort(scores)[::-1]
        best = float(scores[order[0]])
        second = float(scores[order[1]]) if order.size > 1 else -1.0
        margin = NAMED_UNIT_MARGIN if own is not None else UNNAMED_UNIT_MARGIN
        confident = best >= threshold - UNIT_THRESHOLD_DROP and best - second >= margin
        result.append(int(order[0]) if confident else own)
    return result


def name_groups(
    units: Sequence[Turn],
    vectors: Sequence[Floats | None],
    known: npt.NDArray[np.float64],
    columns: Sequence[int | None],
    threshold: float,
    min_unit_s: float = MIN_UNIT_S,
) -> tuple[list[int | None], dict[int, float]]:
    """`columns` with groups of unnamed units named, and each voice so named's best joint similarity.

    A single unit is too noisy to name when its speaker matched nobody (`relabel` asks a wide
    lead), but a found speaker's unnamed units that agree on one best known voice (rows of `known`)
    embedded together (their duration-weighted mean) score steadily: that voice's own speech
    reaches threshold + GROUP_MARGIN, a voice not enrolled stays under it. Only voices that no unit
    carries yet are given: a name already in use is never spread over another found speaker on a
    group score (that would put a merged, non-enrolled voice under it).
    """
    used = {column for column in columns if column is not None}
    groups: dict[tuple[str, int], list[int]] = {}
    for row, (unit, column, vector) in enumerate(zip(units, columns, vectors, strict=True)):
        if column is not None or vector is None or unit.end - unit.start < min_unit_s or known.size == 0:
            continue
        best = int(np.argmax(known @ vector.astype(np.float64)))
        if best not in used:
            groups.setdefault((unit.speaker, best), []).append(row)
    result = list(columns)
    scores: dict[int, float] = {}
    for (_, column), rows in groups.items():
        weighted = [
            np.asarray(vectors[row], np.float64) * (units[row].end - units[row].start) for row in rows
        ]
        joint = _unit(np.sum(weighted, axis=0))
        if joint is None:
            continue
        score = float(known[column] @ joint.astype(np.float64))
        if score >= threshold + GROUP_MARGIN:
            for row in rows:
                result[row] = column
            scores[column] = max(score, scores.get(column, -1.0))
    return result, scores


def identify(
    embedder: SpeakerEmbedder,
    waveform: Waveform,
    diarization: Diarization,
    voices: Sequence[KnownVoice],
    threshold: float | None = None,
) -> Identified:
    """Names for the diarization's speakers and stretches that match a known voice; the rest keep
    SPEAKER_NN.

    Speakers first: each found speaker's whole speech against every known voice, optimal
    assignment at the threshold (two speakers never share a name at this level). Then units
    (pieces of turns, see `relabel`): clustering merges close voices into one speaker and splits
    one voice in two, so a unit whose own speech clearly matches a known voice takes that name;
    the other units keep their speaker's name or SPEAKER_NN. Last, groups of units still unnamed
    that agree on a voice nobody carries are scored jointly (`name_groups`). The identities
    describe the labels that come out, one per label: a name's similarity is its speaker's, else
    its best group's joint similarity, else its units' mean.
    """
    limit = embedder.default_threshold if threshold is None else threshold
    if not voices:
        return Identified(diarization, [])
    speakers = list(dict.fromkeys(turn.speaker for turn in diarization.turns))
    known = np.stack([voice.embedding for voice in voices]).astype(np.float64)
    units = _units(diarization.turns, UNIT_S)
    groups = [[(t.start, t.end) for t in diarization.turns if t.speaker == speaker] for speaker in speakers]
    groups += [[(unit.start, unit.end)] for unit in units]
    vectors = embedder.embed(waveform, groups)
    similarity = np.full((len(vectors), len(voices)), -1.0)
    for row, vector in enumerate(vectors):
        if vector is not None:
            similarity[row] = known @ vector.astype(np.float64)
    by_speaker, by_unit = similarity[: len(speakers)], similarity[len(speakers) :]
    pairs = assign(by_speaker, limit)
    column_of = {speakers[row]: column for row, column in pairs.items()}
    columns = relabel(units, by_unit, column_of, limit)
    columns, group_scores = name_groups(units, vectors[len(speakers) :], known, columns, limit)
    labels = [
        unit.speaker if column is None else voices[column].name
        for unit, column in zip(units, columns, strict=True)
    ]
    turns = _joined([Turn(u.start, u.end, label) for u, label in zip(units, labels, strict=True)])
    row_of = {speaker: row for row, speaker in enumerate(speakers)}
    identities = []
    for label in dict.fromkeys(turn.speaker for turn in turns):
        if label in row_of:
            row = row_of[label]
            identities.append(
                audio_pb2.SpeakerIdentity(speaker=label, similarity=round(float(by_speaker[row].max()), 4))
            )
            continue
        column = next(c for c, voice in enumerate(voices) if voice.name == label)
        speaker = next((s for s, c in column_of.items() if c == column), None)
        if speaker is not None:
            score = float(by_speaker[row_of[speaker], column])
        elif column in group_scores:
            score = group_scores[column]
        else:
            score = float(np.mean([by_unit[i, column] for i, c in enumerate(columns) if c == column]))
        identities.append(audio_pb2.SpeakerIdentity(speaker=label, name=label, similarity=round(score, 4)))
    return Identified(replace(diarization, turns=tuple(turns), num_speakers=len(identities)), identities)


def _joined(turns: Sequence[Turn]) -> list[Turn]:
    """Touching pieces of one label (a turn cut into units) joined back into one turn."""
    result: list[Turn] = []
    for turn in turns:
        if result and result[-1].speaker == turn.speaker and abs(result[-1].end - turn.start) < 1e-6:
            result[-1] = Turn(result[-1].start, turn.end, turn.speaker)
        else:
            result.append(turn)
    return result
