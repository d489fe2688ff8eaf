"""The accuracy rig's scores on hand-made cases whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import librispeech, rttm_set
from eval.datasets import main as datasets_main
from eval.metrics import (
    DiarizationErrors,
    SpeakerTurn,
    SpeakerWord,
    WordErrors,
    normalise_text,
    parse_rttm,
    speaker_word_errors,
    word_error_rate,
)
from eval.run import Floors, read_manifest, render_table


def words(text: str, speakers: str) -> list[SpeakerWord]:
    return [SpeakerWord(word, speaker) for word, speaker in zip(text.split(), speakers.split(), strict=True)]


def test_normalisation_ignores_case_and_punctuation_but_keeps_apostrophes() -> None:
    assert normalise_text("Hello, World! It's twenty-one.") == "hello world it's twenty one"


def test_wer_counts_substitutions_deletions_and_insertions_over_reference_words() -> None:
    errors = WordErrors()
    errors.add("the cat sat on the mat", "The cat sat on a mat.")  # 1 substitution
    errors.add("good morning", "good morning to you")  # 2 insertions
    errors.add("call back later", "")  # 3 deletions
    assert (errors.hits, errors.substitutions, errors.deletions, errors.insertions) == (7, 1, 3, 2)
    assert errors.wer == pytest.approx(6 / 11)
    assert word_error_rate(["a b c d"], ["a b c d"]) == 0.0


def test_wder_is_zero_when_labels_differ_only_in_name() -> None:
    reference = words("hello there how are you fine thanks", "A A B B B A A")
    hypothesis = words("hello there how are you fine thanks", "S1 S1 S0 S0 S0 S1 S1")
    assert speaker_word_errors(reference, hypothesis).wder == 0.0


def test_wder_counts_wrong_speakers_among_aligned_words_only() -> None:
    reference = words("hello there how are you fine thanks", "A A B B B A A")
    # "there" is attributed to the wrong speaker; "you" is deleted; "indeed" is inserted.
    hypothesis = words("hello there how are fine thanks indeed", "X Y Y Y X X X")
    scored = speaker_word_errors(reference, hypothesis)
    assert (scored.aligned, scored.wrong_speaker) == (6, 1)


def test_wder_maps_speakers_one_to_one() -> None:
    reference = words("a b c d", "A A B B")
    hypothesis = words("a b c d", "X X X X")  # one hypothesis speaker can stand for only one
    assert speaker_word_errors(reference, hypothesis).wder == 0.5


def test_der_and_jer_of_a_perfect_and_a_half_wrong_hypothesis() -> None:
    reference = [SpeakerTurn(0.0, 5.0, "A"), SpeakerTurn(5.0, 10.0, "B")]
    perfect = DiarizationErrors()
    assert perfect.add(reference, [SpeakerTurn(0.0, 5.0, "s1"), SpeakerTurn(5.0, 10.0, "s2")], "x") == 0.0
    merged = DiarizationErrors()
    assert merged.add(reference, [SpeakerTurn(0.0, 10.0, "s1")], "x") == pytest.approx(0.5)
    assert merged.der == pytest.approx(0.5)
    assert merged.jer == pytest.approx(0.75)  # mean over speakers: A half right (0.5), B missed (1.0)


def test_rttm_is_parsed_by_recording() -> None:
    text = (
        "SPEAKER call1 1 0.500 1.250 <NA> <NA> alice <NA> <NA>\n"
        "SPEAKER call1 1 2.000 1.000 <NA> <NA> bob <NA> <NA>\n"
        "SPKR-INFO call1 1 <NA> <NA> <NA> unknown alice <NA>\n"
        "SPEAKER call2 1 0 3 <NA> <NA> carol <NA> <NA>\n"
    )
    assert parse_rttm(text) == {
        "call1": [SpeakerTurn(0.5, 1.75, "alice"), SpeakerTurn(2.0, 3.0, "bob")],
        "call2": [SpeakerTurn(0.0, 3.0, "carol")],
    }
    with pytest.raises(ValueError, match="line 1"):
        parse_rttm("SPEAKER x 1 0")


def test_manifest_paths_are_read_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.rttm").write_text("SPEAKER a 1 0 1 <NA> <NA> s <NA> <NA>\n")
    (tmp_path / "a.json").write_text(json.dumps({"words": [{"word": "hi", "speaker": "s"}]}))
    (tmp_path / "m.jsonl").write_text(
        json.dumps(
            {"audio_filepath": "a.wav", "text": "hi", "rttm_filepath": "a.rttm", "words_filepath": "a.json"}
        )
        + "\n\n"
        + json.dumps({"audio_filepath": "/abs/b.flac"})
        + "\n"
    )
    first, second = read_manifest(tmp_path / "m.jsonl")
    assert first.audio == tmp_path / "a.wav"
    assert (first.uri, first.text, first.num_speakers) == ("a", "hi", 1)
    assert first.turns == [SpeakerTurn(0.0, 1.0, "s")]
    assert first.words == [SpeakerWord("hi", "s")]
    assert (second.audio, second.text, second.turns, second.num_speakers) == (
        Path("/abs/b.flac"),
        None,
        None,
        None,
    )


def test_floors_name_each_missed_score() -> None:
    summary: dict[str, float | int | None] = {"wer": 0.2, "der": 0.05, "wder": None}
    assert Floors().failures(summary) == ["WER 0.200 is above the floor 0.10"]
    table = render_table(
        [("sentences", {**summary, "files": 3, "audio_minutes": 0.1, "jer": None, "real_time_factor": 0.01})]
    )
    assert table.splitlines()[1].split() == ["sentences", "3", "0.1", "0.2", "0.05", "-", "-", "-", "0.01"]


def test_librispeech_and_rttm_folders_become_manifests(tmp_path: Path) -> None:
    chapter = tmp_path / "test-clean" / "61" / "70968"
    chapter.mkdir(parents=True)
    (chapter / "61-70968.trans.txt").write_text("61-70968-0000 HE BEGAN A CONFUSED COMPLAINT\n")
    (chapter / "61-70968-0000.flac").write_bytes(b"")
    assert list(librispeech(tmp_path / "test-clean")) == [
        {
            "audio_filepath": str((chapter / "61-70968-0000.flac").resolve()),
            "text": "he began a confused complaint",
            "uri": "61-70968-0000",
        }
    ]
    (tmp_path / "rttm").mkdir()
    (tmp_path / "wav").mkdir()
    (tmp_path / "rttm" / "abjxc.rttm").write_text("SPEAKER abjxc 1 0 1 <NA> <NA> spk00 <NA> <NA>\n")
    with pytest.raises(FileNotFoundError, match=r"no audio for abjxc\.rttm"):
        list(rttm_set(tmp_path / "wav", tmp_path / "rttm"))
    (tmp_path / "wav" / "abjxc.wav").write_bytes(b"")
    manifest = tmp_path / "vox.jsonl"
    assert datasets_main(["rttm", str(tmp_path / "wav"), str(tmp_path / "rttm"), "-o", str(manifest)]) == 0
    (item,) = read_manifest(manifest)
    assert (item.uri, item.num_speakers, item.audio.name) == ("abjxc", 1, "abjxc.wav")
