"""The synthesized corpus: deterministic, disjoint splits, exact references (needs espeak-ng)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from eval import synth

pytestmark = pytest.mark.espeak


def test_same_seed_same_audio_bytes() -> None:
    first = synth.sentence_corpus(seed=7, count=4)
    second = synth.sentence_corpus(seed=7, count=4)
    assert [u.text for u in first] == [u.text for u in second]
    assert [u.voice for u in first] == [u.voice for u in second]
    assert [u.audio.tobytes() for u in first] == [u.audio.tobytes() for u in second]
    a = synth.conversation(seed=3, num_speakers=3, num_turns=6)
    b = synth.conversation(seed=3, num_speakers=3, num_turns=6)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.rttm() == b.rttm()


def test_sample_rate_dtype_and_trimmed() -> None:
    audio = synth.synthesize("hello world", synth.VOICES[0])
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert 0.4 < len(audio) / 16_000 < 2.0  # two words at 16 kHz, silence trimmed
    threshold = 0.01 * np.abs(audio).max()
    assert abs(audio[0]) > threshold
    assert abs(audio[-1]) > threshold
    assert np.abs(audio).max() == pytest.approx(synth.PEAK, rel=1e-5)


def test_sentences_use_the_vocabulary_and_held_out_is_disjoint() -> None:
    train = synth.sentences(seed=0, count=2000)
    test = synth.sentences(seed=1, count=200, exclude=train)
    assert len(set(train)) == 2000
    assert len(test) == 200
    assert not set(test) & set(train)
    vocabulary = set(synth.VOCABULARY)
    for text in train + test:
        words = text.split()
        assert 3 <= len(words) <= 8
        assert set(words) <= vocabulary
        assert text == text.lower()


def test_voices_are_distinct_and_speak() -> None:
    assert len(synth.VOICES) >= 8
    assert len({(v.name, v.pitch) for v in synth.VOICES}) == len(synth.VOICES)
    assert {v.name.split("+")[1][0] for v in synth.VOICES} == {"m", "f"}
    for voice in synth.VOICES:
        assert 140 <= voice.rate <= 190
        assert 25 <= voice.pitch <= 75
        assert len(synth.synthesize("good morning", voice)) > 1000


def test_rttm_parses_and_matches_turns() -> None:
    talk = synth.conversation(seed=11, num_speakers=3, num_turns=7, uri="talk_11")
    lines = talk.rttm().splitlines()
    assert len(lines) == 7
    turns = sorted(talk.turns, key=lambda turn: turn.start)
    for line, turn in zip(lines, turns, strict=True):
        fields = line.split()
        assert len(fields) == 10
        assert fields[0] == "SPEAKER"
        assert fields[1] == "talk_11"
        assert fields[2] == "1"
        assert float(fields[3]) == pytest.approx(turn.start, abs=1e-3)
        assert float(fields[4]) == pytest.approx(turn.end - turn.start, abs=1e-3)
        assert fields[5:7] == ["<NA>", "<NA>"]
        assert fields[7] == turn.speaker
        assert fields[8:] == ["<NA>", "<NA>"]
    assert {turn.speaker for turn in talk.turns} == {"spk0", "spk1", "spk2"}
    assert len(set(talk.voices.values())) == 3
    for previous, current in zip(talk.turns, talk.turns[1:], strict=False):
        assert previous.speaker != current.speaker
    assert talk.turns[-1].end <= talk.duration
    assert talk.transcript() == " ".join(turn.text for turn in turns)
    assert [word for word, _ in talk.words()] == talk.transcript().split()


def test_turn_bounds_are_the_speech_bounds() -> None:
    talk = synth.conversation(seed=5, num_speakers=2, num_turns=4, overlap_probability=0.0)
    rate = 16_000
    for turn in talk.turns:
        start, end = round(turn.start * rate), round(turn.end * rate)
        assert np.abs(talk.audio[start:end]).max() > 0.1
        assert np.abs(talk.audio[start - 100 : start]).max() < 0.01 * synth.PEAK
        assert np.abs(talk.audio[end : end + 100]).max() < 0.01 * synth.PEAK
    for previous, current in zip(talk.turns, talk.turns[1:], strict=False):
        assert 0.2 - 1e-3 <= current.start - previous.end <= 0.8 + 1e-3


def test_overlap_when_probability_is_one() -> None:
    talk = synth.conversation(seed=2, num_speakers=2, num_turns=5, overlap_probability=1.0)
    overlaps = [
        previous.end - current.start
        for previous, current in zip(talk.turns, talk.turns[1:], strict=False)
        if current.start < previous.end
    ]
    assert len(overlaps) == 4
    assert all(0.0 < overlap <= 0.5 + 1e-3 for overlap in overlaps)
    assert np.abs(talk.audio).max() <= 1.0


def test_cli_writes_manifest_rttm_and_words(tmp_path: Path) -> None:
    synth.main(["--out", str(tmp_path), "--seed", "4", "--sentences", "3", "--conversations", "1"])
    entries = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(entries) == 4
    for entry in entries:
        with wave.open(entry["audio_filepath"]) as reader:
            assert reader.getframerate() == 16_000
            assert reader.getnchannels() == 1
            assert reader.getnframes() / 16_000 == pytest.approx(entry["duration"], abs=1e-3)
        assert entry["text"]
    reference = json.loads((tmp_path / "conversations" / "conversation_000.json").read_text())
    rttm = (tmp_path / "conversations" / "conversation_000.rttm").read_text()
    assert len(rttm.splitlines()) == len(reference["turns"])
    assert " ".join(word["word"] for word in reference["words"]) == reference["transcript"]
