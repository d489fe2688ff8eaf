"""Known speakers by voiceprint, measured with the offline backend on synthesized conversations.

Each voice is enrolled from 10-20 s of OTHER sentences by the same voice (never the conversation's
own speech). Two cases per conversation:

* all enrolled: every speaker in it is enrolled, plus one voice that is not in it (a distractor);
  the figure is the share of words whose speaker carries the right name (>= 95 % wanted);
* one not enrolled: one speaker of it is left out and a voice not in it is enrolled instead, so
  there is a free name it could wrongly take; the figure is the share of that speaker's words that
  carry any name (<= 2 % wanted).

Also the DER of the all-enrolled output against the same diarization without known speakers (naming
must not make diarization worse), and the seconds `identify` takes per conversation.

A word's time is its place in its reference turn (turns are spread evenly over their words); its
speaker is the label of the found turn covering that time (the nearest turn when none does).

    .venv/bin/python -m eval.voiceprints --conversations 12 --seed 7100
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from eval import synth
from eval.metrics import DiarizationErrors, SpeakerTurn
from parakeet.v1 import audio_pb2
from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.diarization.offline_engine import OfflineEngine
from parakeet_server.diarization.types import Diarization
from parakeet_server.diarization.voiceprints import (
    CamPlusPlusEmbedder,
    KnownVoice,
    OfflineEmbedder,
    ResemblyzerEmbedder,
    SpeakerEmbedder,
    enroll,
    identify,
)

ENROL_SECONDS = (10.0, 20.0)
EMBEDDERS: dict[str, type[OfflineEmbedder]] = {
    "fused": OfflineEmbedder,
    "campplus": CamPlusPlusEmbedder,
    "resemblyzer": ResemblyzerEmbedder,
}
SEED = 7100


@dataclass(frozen=True)
class Figures:
    """What one run measured."""

    conversations: int
    words_all_enrolled: int
    right_name_rate: float
    words_not_enrolled: int
    named_when_not_enrolled_rate: float
    same_voice_similarity_min: float
    other_voice_similarity_max: float
    threshold: float
    der_without_known_speakers: float
    der_all_enrolled: float
    identify_seconds_per_conversation: float


def enrolment_audio(voice: synth.Voice, seed: int) -> Waveform:
    """10-20 s of sentences by `voice`, drawn with `seed` (not a conversation's sentences), 0.3 s apart."""
    rng = random.Random(seed)
    wanted = rng.uniform(*ENROL_SECONDS)
    pause = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    pieces: list[synth.Audio] = []
    total = 0.0
    for text in synth.sentences(seed, 40, min_words=5, max_words=10):
        clip = synth.synthesize(text, voice)
        if total + len(clip) / SAMPLE_RATE > ENROL_SECONDS[1]:
            break
        pieces += [clip, pause]
        total += (len(clip) + len(pause)) / SAMPLE_RATE
        if total >= wanted:
            break
    return Waveform(np.concatenate(pieces))


def word_speakers(talk: synth.Conversation, found: Diarization) -> list[tuple[str, str]]:
    """(reference speaker, found label) per word."""
    result = []
    for turn in talk.turns:
        words = turn.text.split()
        for index in range(len(words)):
            at = turn.start + (index + 0.5) * (turn.end - turn.start) / len(words)
            covering = [t for t in found.turns if t.start <= at < t.end]
            if covering:
                label = covering[0].speaker
            elif found.turns:
                label = min(found.turns, key=lambda t: min(abs(t.start - at), abs(t.end - at))).speaker
            else:
                label = ""
            result.append((turn.speaker, label))
    return result


def measure(
    engine: OfflineEngine,
    conversations: int,
    seed: int = SEED,
    threshold: float | None = None,
    embedder: SpeakerEmbedder | None = None,
) -> Figures:
    """The two cases over `conversations` seeded conversations of 2-4 speakers (`embedder`: the
    offline backend's own by default)."""
    embedder = OfflineEmbedder(engine) if embedder is None else embedder
    prints: dict[str, audio_pb2.Voiceprint] = {}
    for index, voice in enumerate(synth.VOICES):
        prints[voice.label] = enroll(embedder, enrolment_audio(voice, seed * 31 + index))
    right = total = named = alien = 0
    same: list[float] = []
    other: list[float] = []
    threshold = embedder.default_threshold if threshold is None else threshold
    plain, named_der = DiarizationErrors(), DiarizationErrors()
    spent = 0.0
    for offset in range(conversations):
        rng = random.Random(seed + offset)
        talk = synth.conversation(seed + offset, 2 + offset % 3, 10 + offset % 5)
        present = {voice.label for voice in talk.voices.values()}
        absent = [voice for voice in synth.VOICES if voice.label not in present]
        distractor, stand_in = rng.sample(absent, 2)
        waveform = Waveform(talk.audio)
        found = engine.diarize(waveform)

        def voice_list(labels: Sequence[str]) -> list[KnownVoice]:
            return [KnownVoice(label, np.asarray(prints[label].embedding, np.float32)) for label in labels]

        everyone = voice_list([*present, distractor.label])
        began = time.perf_counter()
        result = identify(embedder, waveform, found, everyone, threshold)
        spent += time.perf_counter() - began
        reference = [SpeakerTurn(t.start, t.end, t.speaker) for t in talk.turns]
        plain.add(reference, [SpeakerTurn(*t) for t in found.turns], talk.uri)
        named_der.add(reference, [SpeakerTurn(*t) for t in result.diarization.turns], talk.uri)
        for speaker, label in word_speakers(talk, result.diarization):
            total += 1
            right += label == talk.voices[speaker].label
        left_out = rng.choice(sorted(talk.voices))
        enrolled = [*(present - {talk.voices[left_out].label}), stand_in.label]
        result = identify(embedder, waveform, found, voice_list(enrolled), threshold)
        for speaker, label in word_speakers(talk, result.diarization):
            if speaker == left_out:
                alien += 1
                named += not label.startswith("SPEAKER_")
        for speaker, voice in talk.voices.items():
            spans = [(t.start, t.end) for t in talk.turns if t.speaker == speaker]
            vector = embedder.embed(waveform, [spans])[0]
            assert vector is not None
            for label, made in prints.items():
                similarity = float(np.dot(vector, np.asarray(made.embedding, np.float32)))
                (same if label == voice.label else other).append(similarity)
    return Figures(
        conversations=conversations,
        words_all_enrolled=total,
        right_name_rate=round(right / max(total, 1), 4),
        words_not_enrolled=alien,
        named_when_not_enrolled_rate=round(named / max(alien, 1), 4),
        same_voice_similarity_min=round(min(same), 4),
        other_voice_similarity_max=round(max(other), 4),
        threshold=threshold,
        der_without_known_speakers=round(plain.der, 4),
        der_all_enrolled=round(named_der.der, 4),
        identify_seconds_per_conversation=round(spent / max(conversations, 1), 3),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threshold", type=float, default=None, help="default: the embedder's")
    parser.add_argument(
        "--embedder",
        choices=sorted(EMBEDDERS),
        default="fused",
        help="the offline speaker embedding (fused: CAM++ + resemblyzer, the backend's own)",
    )
    args = parser.parse_args(argv)
    engine = OfflineEngine(device="cpu")
    engine.load()
    embedder = EMBEDDERS[args.embedder](engine)
    figures = measure(engine, args.conversations, args.seed, args.threshold, embedder)
    print(json.dumps(asdict(figures), indent=2))


if __name__ == "__main__":
    main()
