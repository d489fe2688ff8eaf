"""`python -m eval`'s report: clean | realistic side by side, by speaker count, by condition, floors.

The stack is replaced by scripted answers (as in test_eval_run.py): these tests exercise how the
runner splits and lays out scores and which floors it holds, in milliseconds. The real stack's
figures are measured by tests/accuracy/test_conversations.py and docs/accuracy.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import report, run
from eval.datasets import main as datasets_main
from eval.floors import Floors
from parakeet.v1 import audio_pb2, orchestrator_pb2

# audio content -> (reference speakers, hypothesis speakers): one word per speaker label
SCRIPT: dict[bytes, tuple[list[str], list[str]]] = {
    b"C1": (["a", "a", "b", "b"], ["S0", "S0", "S1", "S1"]),  # two speakers, both found
    b"R1": (["a", "a", "a", "a"], ["S0", "S0", "S1", "S1"]),  # one speaker, two found
    b"R2": (["a", "a", "b", "b"], ["S0", "S0", "S1", "S1"]),  # two speakers, both found
}


def scripted(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
    _, found = SCRIPT[request.audio.content]
    words = [f"w{i}" for i in range(len(found))]
    return orchestrator_pb2.OrchestrateResponse(
        text=" ".join(words),
        words=[
            audio_pb2.Word(word=w, start=i, end=i + 1, speaker=s)
            for i, (w, s) in enumerate(zip(words, found, strict=True))
        ],
        speaker_turns=[audio_pb2.SpeakerTurn(start=i, end=i + 1, speaker=s) for i, s in enumerate(found)],
        num_speakers=len(set(found)),
        duration=60.0,
    )


def manifest(folder: Path, name: str, entries: list[tuple[bytes, str | None]]) -> Path:
    """One entry per (audio content, condition); references from SCRIPT."""
    lines = []
    for content, condition in entries:
        stem = content.decode()
        (folder / f"{stem}.wav").write_bytes(content)
        speakers, _ = SCRIPT[content]
        words = [{"word": f"w{i}", "speaker": s} for i, s in enumerate(speakers)]
        (folder / f"{stem}.json").write_text(json.dumps({"words": words}))
        rttm = "".join(f"SPEAKER {stem} 1 {i} 1 <NA> <NA> {s} <NA> <NA>\n" for i, s in enumerate(speakers))
        (folder / f"{stem}.rttm").write_text(rttm)
        entry = {
            "audio_filepath": f"{stem}.wav",
            "text": " ".join(w["word"] for w in words),
            "words_filepath": f"{stem}.json",
            "rttm_filepath": f"{stem}.rttm",
            "uri": stem,
            **({"condition": condition} if condition else {}),
        }
        lines.append(json.dumps(entry) + "\n")
    path = folder / f"{name}.jsonl"
    path.write_text("".join(lines))
    return path


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "embedded", lambda model, pipeline, diarize: scripted)


def test_clean_and_realistic_side_by_side_with_counts_and_conditions(
    stack, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(run, "REALISTIC", Floors(wer=0.1, der=1.0, wder=0.2, speaker_count_exact=0.6))
    clean = manifest(tmp_path, "clean", [(b"C1", None)])
    realistic = manifest(tmp_path, "realistic", [(b"R1", "room"), (b"R2", "telephone")])
    scores = tmp_path / "report.json"
    argv = ["-q", "--check-floors", str(clean), "--realistic", str(realistic), "--json", str(scores)]
    assert run.main(argv) == 1
    out, err = capsys.readouterr()
    body = json.loads(scores.read_text())
    assert list(body["corpora"]) == ["given", "realistic"]
    given, real = body["corpora"]["given"], body["corpora"]["realistic"]
    assert (given["speaker_count_exact"], given["wder"]) == (1.0, 0.0)
    # R1's one speaker came back as two: its count is wrong and half its words carry the wrong speaker
    assert (real["speaker_count_exact"], real["speaker_counts_scored"], real["wder"]) == (0.5, 2, 0.25)
    one = body["by_speaker_count"]["1"]
    assert list(one) == ["realistic"]
    assert (one["realistic"]["files"], one["realistic"]["wder"], one["realistic"]["speaker_count_exact"]) == (
        1,
        0.5,
        0.0,
    )
    assert list(body["by_speaker_count"]["2"]) == ["given", "realistic"]
    assert list(body["by_condition"]) == ["room", "telephone"]  # the clean manifest names no condition
    assert body["by_condition"]["telephone"]["realistic"]["speaker_count_exact"] == 1.0
    assert body["floors"]["given"] == "WER <= 10 %, DER <= 10 %, WDER <= 5 %"
    assert (
        body["floors"]["realistic"] == "WER <= 10 %, DER <= 100 %, WDER <= 20 %, speaker count exact >= 60 %"
    )
    assert body["floors_missed"] == [
        f"{realistic}: WDER 0.250 is above the floor 0.20",
        f"{realistic}: speaker count exact 0.500 is below the floor 0.60",
    ]
    assert err == "".join(f"FLOOR MISSED  {line}\n" for line in body["floors_missed"])
    lines = out.splitlines()
    side = lines.index("score             given     realistic")
    assert lines[side + 1 : side + 3] == ["files             1         2", "audio minutes     1.0       2.0"]
    assert "count exact       100.00 %  50.00 %" in lines
    legend = lines.index("each cell: given | realistic")
    assert lines[legend + 1].split()[:3] == ["speakers", "files", "WER"]
    assert lines[legend + 2].split()[:4] == ["1", "-", "|", "1"]  # one speaker: realistic only
    assert (
        "given floors: WER <= 10 %, DER <= 10 %, WDER <= 5 % (a score without references is not checked), held by:"
        in lines
    )
    assert f"  {realistic}" in lines and lines[-1] == "floors missed"


def test_without_speakers_asked_no_speaker_score_is_made(stack, tmp_path, capsys) -> None:
    realistic = manifest(tmp_path, "realistic", [(b"R1", "room")])
    scores = tmp_path / "report.json"
    assert run.main(["-q", "--no-diarize", "--realistic", str(realistic), "--json", str(scores)]) == 0
    body = json.loads(scores.read_text())
    summary = body["corpora"]["realistic"]
    assert (summary["wer"], summary["der"], summary["wder"], summary["speaker_count_exact"]) == (
        0.0,
        None,
        None,
        None,
    )
    assert body["by_speaker_count"] == {}
    assert list(body["by_condition"]) == ["room"]


def test_floors_hold_the_speaker_count_as_a_minimum() -> None:
    floors = Floors(speaker_count_exact=0.6)
    assert floors.failures({"wer": 0.01, "speaker_count_exact": 0.5}) == [
        "speaker count exact 0.500 is below the floor 0.60"
    ]
    assert floors.failures({"speaker_count_exact": 0.6}) == []
    assert floors.describe().endswith("speaker count exact >= 60 %")
    assert "speaker count" not in Floors().describe()


def test_cells_are_percentages_and_missing_scores_are_dashes() -> None:
    assert report.cell({"der": 0.2312}, "der", True) == "23.12 %"
    assert report.cell({"der": None}, "der", True) == "-"
    assert report.cell(None, "files", False) == "-"
    groups = {"room": {"realistic": {"files": 3, "der": 0.5}}}
    assert report.by_group("condition", groups, ["clean", "realistic"]).splitlines() == [
        "each cell: clean | realistic",
        "condition  files  WER    DER          JER    WDER   count exact",
        "room       - | 3  - | -  - | 50.00 %  - | -  - | -  - | -",
    ]
    groups["clean"] = {"clean": {"files": 2}}
    assert report.by_group_and_corpus("condition", groups).splitlines() == [
        "condition  set        files  WER  DER      JER  WDER  count exact",
        "room       realistic  3      -    50.00 %  -    -     -",
        "clean      clean      2      -    -        -    -     -",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--realistic-minutes", "0.5"], "--realistic-minutes must be at least 1"),
        (["--realistic-conversations", "-1"], "--realistic-conversations must be 0 or more, got -1"),
    ],
)
def test_bad_sizes_are_refused_before_any_work(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        run.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_dataset_manifest_can_name_its_condition(tmp_path: Path) -> None:
    (tmp_path / "rttm").mkdir()
    (tmp_path / "wav").mkdir()
    (tmp_path / "rttm" / "es2004a.rttm").write_text("SPEAKER es2004a 1 0 1 <NA> <NA> A <NA> <NA>\n")
    (tmp_path / "wav" / "es2004a.wav").write_bytes(b"")
    output = tmp_path / "ami.jsonl"
    argv = [
        "rttm",
        str(tmp_path / "wav"),
        str(tmp_path / "rttm"),
        "--condition",
        "ami-sdm",
        "-o",
        str(output),
    ]
    assert datasets_main(argv) == 0
    (item,) = run.read_manifest(output, condition="fallback")
    assert (item.uri, item.condition, item.num_speakers) == ("es2004a", "ami-sdm", 1)
    (tmp_path / "plain.jsonl").write_text(json.dumps({"audio_filepath": "wav/es2004a.wav"}) + "\n")
    (plain,) = run.read_manifest(tmp_path / "plain.jsonl", condition="clean")
    assert plain.condition == "clean"
