"""`python -m eval`: which rows --check-floors holds, pooling with --pool, what it prints.

The stack is replaced by scripted answers (eval.run.embedded), so these tests exercise
the command's own logic in milliseconds: manifests, pooling, the table, the floors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import run
from parakeet.v1 import audio_pb2, orchestrator_pb2

WORDS = [f"w{i}" for i in range(10)]
REFERENCE_SPEAKERS = ["spk0"] * 5 + ["spk1"] * 5
# One of ten words goes to the wrong speaker in "a" (WDER 10 %), none in "b": 5 % pooled.
HYPOTHESIS_SPEAKERS = {
    b"A": ["SPEAKER_00"] * 5 + ["SPEAKER_01"] * 4 + ["SPEAKER_00"],
    b"B": ["SPEAKER_00"] * 5 + ["SPEAKER_01"] * 5,
}


def floors_lines(out: str) -> list[str]:
    """What --check-floors printed: from its first line to the end."""
    lines = out.splitlines()
    return lines[lines.index(FLOORS) :]


FLOORS = "floors: WER <= 10 %, DER <= 10 %, WDER <= 5 % (a score without references is not checked), held by:"


def write_manifest(folder: Path, name: str, content: bytes) -> Path:
    (folder / f"{name}.wav").write_bytes(content)
    words = [{"word": w, "speaker": s} for w, s in zip(WORDS, REFERENCE_SPEAKERS, strict=True)]
    (folder / f"{name}.words.json").write_text(json.dumps({"words": words}))
    entry = {"audio_filepath": f"{name}.wav", "text": " ".join(WORDS), "words_filepath": f"{name}.words.json"}
    manifest = folder / f"{name}.jsonl"
    manifest.write_text(json.dumps(entry) + "\n")
    return manifest


def scripted(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
    speakers = HYPOTHESIS_SPEAKERS[request.audio.content]
    return orchestrator_pb2.OrchestrateResponse(
        text=" ".join(WORDS),
        words=[
            audio_pb2.Word(word=w, start=i, end=i + 0.5, speaker=s)
            for i, (w, s) in enumerate(zip(WORDS, speakers, strict=True))
        ],
        duration=10.0,
    )


@pytest.fixture
def manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setattr(run, "embedded", lambda model, pipeline, diarize: scripted)
    return str(write_manifest(tmp_path, "a", b"A")), str(write_manifest(tmp_path, "b", b"B"))


def test_pooled_manifests_are_held_to_the_floors_as_one_pool(manifests, tmp_path, capsys) -> None:
    a, b = manifests
    scores = tmp_path / "scores.json"
    assert run.main(["--check-floors", "-q", "--pool", a, "--pool", b, "--json", str(scores)]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(scores.read_text())["sets"]
    assert list(rows) == [a, b, "pooled (2 manifests)"]
    assert [rows[name]["wder"] for name in rows] == [0.1, 0.0, 0.05]
    assert [rows[name]["files"] for name in rows] == [1, 1, 2]
    assert floors_lines(out) == [FLOORS, f"  pooled (2 manifests) (pooled: {a}, {b})", "floors met"]
    assert err == ""


def test_manifests_given_alone_are_each_held_to_the_floors(manifests, capsys) -> None:
    a, b = manifests
    assert run.main(["--check-floors", "-q", a, b]) == 1
    out, err = capsys.readouterr()
    assert floors_lines(out) == [FLOORS, f"  {a}", f"  {b}", "floors missed"]
    assert err == f"FLOOR MISSED  {a}: WDER 0.100 is above the floor 0.05\n"


def test_alone_and_pooled_manifests_mix(manifests, capsys) -> None:
    a, b = manifests
    assert run.main(["--check-floors", "-q", b, "--pool", a]) == 1
    out, err = capsys.readouterr()
    table = [line.split()[0] for line in out.splitlines()[1:4]]
    assert table == [b, a, "pooled"]  # alone first, then the pool's members and the pool
    assert floors_lines(out) == [FLOORS, f"  {b}", f"  pooled (1 manifest) (pooled: {a})", "floors missed"]
    assert err == "FLOOR MISSED  pooled (1 manifest): WDER 0.100 is above the floor 0.05\n"


def test_without_check_floors_nothing_is_held(manifests, capsys) -> None:
    a, b = manifests
    assert run.main(["-q", a, b]) == 0  # a's WDER is over the floor, but no floor is checked
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[0] == a and out.splitlines()[2].split()[0] == b
    assert FLOORS not in out and "floors met" not in out  # the report alone
    assert err == ""


def test_a_manifest_is_either_alone_or_pooled(manifests, capsys) -> None:
    a, _ = manifests
    with pytest.raises(SystemExit) as exited:
        run.main([a, "--pool", a])
    assert exited.value.code == 2
    assert f"a manifest is either scored alone or pooled, not both: {a}" in capsys.readouterr().err
