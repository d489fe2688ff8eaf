"""The realistic corpus (eval/realistic.py) and the offline diarizer's floors on it.

The floors are what the backend reaches today on the held-out `test` split (count unknown),
asserted so that a change can only keep or improve them; the issue's targets (DER <= 15 %,
exact count on >= 80 % of conversations) are not reached yet (docs/accuracy.md). Music-only input
gives no speakers (the speech/music gate); music 30 dB under one voice leaves one speaker (at 24 dB
under it a steady chord still splits the voice in two: not held here).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from eval import realistic
from eval.metrics import DiarizationErrors, SpeakerTurn
from eval.synth import Conversation
from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.diarization.offline_engine import OfflineEngine
from tests.diarization.test_offline_engine import music

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

# Measured on test conversations 0-5 of at most 1 minute (1-6 speakers, one condition each):
# 20.5 % DER and 5 of 6 counts exact (before the pitch-free count: 22.5 %, 3 of 6).
# 0.16: measured 15.2 % with the speech gate (16.8 % before it, 20.5 % before overlap and CAM++).
HELD_OUT_DER_FLOOR = 0.16
HELD_OUT_EXACT_FLOOR = 5
SINGLE_SPEAKER_DER_FLOOR = 0.05  # measured 3.1 % on 5 minutes of one varied voice with pauses


def reference(talk: Conversation) -> list[SpeakerTurn]:
    return [SpeakerTurn(turn.start, turn.end, turn.speaker) for turn in talk.turns]


@pytest.fixture(scope="module")
def offline() -> OfflineEngine:
    engine = OfflineEngine(device="cpu")
    engine.load()
    return engine


@pytest.fixture(scope="module")
def held_out() -> list[tuple[realistic.Spec, Conversation]]:
    items = [realistic.spec("test", index, max_minutes=1.0) for index in range(6)]
    return [(item, realistic.render(item)) for item in items]


def test_a_conversation_is_the_same_from_the_same_seed_and_its_speakers_vary_their_voice() -> None:
    item = realistic.spec("dev", 7, max_minutes=1.0)
    first, second = realistic.render(item), realistic.render(item)
    np.testing.assert_array_equal(first.audio, second.audio)
    assert [vars(turn) for turn in first.turns] == [vars(turn) for turn in second.turns]
    assert set(first.voices) == {"spk0", "spk1"}
    assert 0.05 <= realistic.overlap_share(first.turns) <= 0.25


def test_splits_are_disjoint_and_cover_every_speaker_count_and_condition() -> None:
    dev = [realistic.spec("dev", index) for index in range(48)]
    test = [realistic.spec("test", index) for index in range(48)]
    assert not {item.seed for item in dev} & {item.seed for item in test}
    assert {item.num_speakers for item in dev} == {1, 2, 3, 4, 5, 6}
    assert {item.condition.name for item in dev} == set(realistic.BY_NAME)
    assert all(1.0 <= item.minutes <= 10.0 for item in dev)
    with pytest.raises(ValueError, match="split must be one of dev, test"):
        realistic.spec("train", 0)


def test_unseen_voices_share_no_variant_with_the_training_voices() -> None:
    from eval.synth import VOICES

    assert not {voice.name for voice in realistic.UNSEEN_VOICES} & {voice.name for voice in VOICES}


def test_the_telephone_band_removes_what_is_above_four_kilohertz() -> None:
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    spectrum = np.abs(np.fft.rfft(realistic._telephone(noise)))
    frequencies = np.fft.rfftfreq(noise.size, 1 / SAMPLE_RATE)
    assert (
        spectrum[frequencies > 4500].mean()
        < 0.05 * spectrum[(frequencies > 500) & (frequencies < 3000)].mean()
    )


@pytest.mark.parametrize("codec", ["mp3", "opus"])
def test_a_codec_round_trip_keeps_the_length_and_most_of_the_signal(codec: str) -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoded = realistic._codec(tone, codec, 16_000)
    assert decoded.size == tone.size
    assert np.sqrt(np.mean(decoded[4000:12000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.3)


def test_held_out_der_and_speaker_counts_stay_at_their_floors(offline, held_out) -> None:  # type: ignore[no-untyped-def]
    errors = DiarizationErrors()
    exact = 0
    for item, talk in held_out:
        found = offline.diarize(Waveform(talk.audio))
        hypothesis = [SpeakerTurn(turn.start, turn.end, turn.speaker) for turn in found.turns]
        errors.add(reference(talk), hypothesis, item.uri)
        exact += found.num_speakers == item.num_speakers
    assert errors.der <= HELD_OUT_DER_FLOOR, f"DER {errors.der:.3f}"
    assert exact >= HELD_OUT_EXACT_FLOOR


def test_five_minutes_of_one_varied_voice_with_pauses_is_one_speaker(offline) -> None:  # type: ignore[no-untyped-def]
    item = replace(realistic.spec("test", 0), minutes=5.0)
    assert item.num_speakers == 1
    talk = realistic.render(item)
    assert talk.duration > 280
    found = offline.diarize(Waveform(talk.audio))
    assert found.num_speakers == 1
    errors = DiarizationErrors()
    hypothesis = [SpeakerTurn(turn.start, turn.end, turn.speaker) for turn in found.turns]
    assert errors.add(reference(talk), hypothesis, item.uri) <= SINGLE_SPEAKER_DER_FLOOR


def test_silence_gives_no_speakers(offline) -> None:  # type: ignore[no-untyped-def]
    found = offline.diarize(Waveform(np.zeros(30 * SAMPLE_RATE, dtype=np.float32)))
    assert (found.num_speakers, found.turns) == (0, ())


@pytest.mark.parametrize("kind", ["chord", "melody"])
def test_music_only_gives_no_speakers_and_music_under_a_voice_keeps_the_voice(offline, kind) -> None:  # type: ignore[no-untyped-def]
    assert offline.diarize(Waveform(music(kind))).num_speakers == 0
    item = replace(realistic.spec("test", 0, max_minutes=1.0), minutes=0.5)
    talk = realistic.render(item)
    background = music(kind, talk.duration)[: talk.audio.size]
    found = offline.diarize(Waveform(talk.audio + 0.05 * background))  # peaks 30 dB under the voice
    assert found.num_speakers == 1
    errors = DiarizationErrors()
    hypothesis = [SpeakerTurn(turn.start, turn.end, turn.speaker) for turn in found.turns]
    assert errors.add(reference(talk), hypothesis, item.uri) <= 0.15
