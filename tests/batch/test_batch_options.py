"""`parakeet batch` with hotwords, known speakers and multichannel (#19), without the models: manifest
rows carry them (speaker files relative to the manifest), `request_for` puts them in the request,
a row's bad value is that row's failure with its reason, the run's own bad value a usage error, and
the RunPod backend sends them in the job JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parakeet import cli
from parakeet.batch import RESULTS, BatchItem, Outputs, ResultsLog, expand, request_for, run
from parakeet.batch.items import BatchInputError
from parakeet.batch.outputs import ResultRow, recovered_row
from parakeet.client import write_voiceprint
from parakeet.errors import FailedPrecondition
from parakeet.runpod import response_to_json
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2
from tests.batch.test_batch_runpod import fake  # noqa: F401  # the fake RunPod API fixture

ANSWER = orchestrator_pb2.OrchestrateResponse(
    text="hello",
    duration=1.5,
    num_speakers=1,
    speaker_identities=[
        audio_pb2.SpeakerIdentity(speaker="Alice", name="Alice", similarity=0.97),
        audio_pb2.SpeakerIdentity(speaker="SPEAKER_01", similarity=0.4),
    ],
)


def voiceprint(path: Path, name: str, model: str = "resemblyzer") -> Path:
    enrolled = diarization_pb2.EnrollResponse(
        name=name, voiceprint=audio_pb2.Voiceprint(embedding=[0.6, 0.8], model=model, model_version="v1")
    )
    return write_voiceprint(path, enrolled)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("a.wav", "b.wav", "c.wav"):
        (tmp_path / name).write_bytes(b"RIFF" + name.encode())
    (tmp_path / "voices").mkdir()
    voiceprint(tmp_path / "voices" / "alice.voiceprint.json", "Alice")
    voiceprint(tmp_path / "voices" / "bob.voiceprint.json", "Bob")
    return tmp_path


def test_jsonl_and_csv_rows_carry_hotwords_speakers_multichannel_and_a_threshold(tree: Path) -> None:
    (tree / "list.jsonl").write_text(
        json.dumps(
            {
                "path": "a.wav",
                "hotwords": ["Kubernetes", "Ada:2"],
                "speakers": ["voices/alice.voiceprint.json"],
                "multichannel": True,
                "speaker_threshold": 0.8,
            }
        )
        + "\n"
    )
    (tree / "list.csv").write_text(
        "path,hotwords,speakers,multichannel,speaker_threshold\n"
        "b.wav, Ada Lovelace:3 ;;Kubernetes,voices/alice.voiceprint.json;voices/bob.voiceprint.json,yes,-0.5\n"
        "c.wav,,,,\n"
    )
    items = expand([str(tree / "list.jsonl"), str(tree / "list.csv")])
    voices = tree / "voices"
    assert items == [
        BatchItem(
            str(tree / "a.wav"),
            "a",
            {
                "hotwords": ["Kubernetes", "Ada:2"],
                "speakers": [str(voices / "alice.voiceprint.json")],
                "multichannel": True,
                "speaker_threshold": 0.8,
            },
        ),
        BatchItem(
            str(tree / "b.wav"),
            "b",
            {
                "hotwords": ["Ada Lovelace:3", "Kubernetes"],
                "speakers": [str(voices / "alice.voiceprint.json"), str(voices / "bob.voiceprint.json")],
                "multichannel": True,
                "speaker_threshold": -0.5,
            },
        ),
        BatchItem(str(tree / "c.wav"), "c", {}),
    ]
    request = request_for(items[1], {"diarize": True, "hotwords": ["ignored"]})
    assert [(h.phrase, h.boost) for h in request.hotwords] == [("Ada Lovelace", 3.0), ("Kubernetes", 0.0)]
    assert not request.hotwords[1].HasField("boost")  # the server's default boost
    assert [s.name for s in request.known_speakers] == ["Alice", "Bob"]
    assert list(request.known_speakers[0].voiceprint.embedding) == pytest.approx([0.6, 0.8])
    assert (request.multichannel, request.speaker_match_threshold) == (True, -0.5)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"hotwords": "Kubernetes"}, None),  # a string is a ';'-separated list, as in CSV
        ({"hotwords": [1, 2]}, ":1: hotwords must be a list of strings (CSV: ';'-separated), got [1, 2]"),
        ({"speakers": {"a": 1}}, ":1: speakers must be a list of strings (CSV: ';'-separated), got {'a': 1}"),
        ({"speaker_threshold": "high"}, ":1: speaker_threshold must be float, got 'high'"),
        ({"multichannel": "stereo"}, ":1: multichannel must be bool, got 'stereo'"),
    ],
)
def test_a_row_of_the_wrong_shape_refuses_the_run_with_its_line(
    tree: Path, record: dict[str, object], message: str | None
) -> None:
    manifest = tree / "list.jsonl"
    manifest.write_text(json.dumps({"path": "a.wav", **record}) + "\n")
    if message is None:
        assert expand([str(manifest)])[0].options == {"hotwords": ["Kubernetes"]}
        return
    with pytest.raises(BatchInputError) as caught:
        expand([str(manifest)])
    assert str(caught.value) == f"{manifest}{message}"


def test_the_runs_speakers_go_with_diarized_files_only_and_a_rows_own_replace_them(tree: Path) -> None:
    alice = str(tree / "voices" / "alice.voiceprint.json")
    defaults = {"speakers": [alice], "speaker_threshold": 0.7, "hotwords": ["Kubernetes:1.5"]}
    plain = request_for(BatchItem(str(tree / "a.wav"), "a"), defaults)
    assert (list(plain.known_speakers), plain.HasField("speaker_match_threshold")) == ([], False)
    assert [(h.phrase, h.boost) for h in plain.hotwords] == [("Kubernetes", 1.5)]
    diarized = request_for(BatchItem(str(tree / "a.wav"), "a", {"diarize": True}), defaults)
    assert [s.name for s in diarized.known_speakers] == ["Alice"]
    assert diarized.speaker_match_threshold == pytest.approx(0.7)
    own = request_for(
        BatchItem(str(tree / "a.wav"), "a", {"diarize": True, "speakers": [], "hotwords": []}), defaults
    )
    assert (list(own.known_speakers), list(own.hotwords)) == ([], [])


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"diarize": True, "speakers": ["{tmp}/nobody.voiceprint.json"]},
            "speakers: cannot read the voiceprint file",
        ),
        (
            {"diarize": True, "speakers": ["{tmp}/a.wav"]},
            "is not a voiceprint file (made by `parakeet enroll`)",
        ),
        (
            {"speakers": ["{tmp}/voices/alice.voiceprint.json"]},
            "speakers names the speakers diarization finds",
        ),
        ({"hotwords": ["Ada:0"]}, "hotwords 'Ada:0': boost must be in (0, 10] (got 0)"),
        ({"hotwords": ["  :2"]}, "hotwords '  :2': phrase is empty"),
        ({"hotwords": ["x" * 101]}, "phrase is 101 characters, over the limit of 100"),
        ({"hotwords": ["w"] * 101}, "hotwords: 101 hotwords is over the limit of 100"),
        ({"diarize": True, "speaker_threshold": 1.5}, "speaker_threshold is a cosine similarity"),
    ],
)
def test_a_rows_bad_value_is_that_rows_failure_with_its_reason(
    tree: Path, options: dict[str, object], says: str
) -> None:
    def fill(value: object) -> object:
        return [part.format(tmp=tree) for part in value] if isinstance(value, list) else value

    bad = BatchItem(str(tree / "a.wav"), "a", {name: fill(value) for name, value in options.items()})
    good = BatchItem(str(tree / "b.wav"), "b")
    sent: list[orchestrator_pb2.OrchestrateRequest] = []

    def transcribe(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
        sent.append(request)
        return ANSWER

    log = ResultsLog(tree / "out" / RESULTS)
    summary = run([bad, good], transcribe, Outputs(tree / "out", ("json",)), log, progress=False)
    assert (summary.done, summary.failed, summary.exit_status) == (1, 1, 1)
    row = log.rows()["a"]
    assert (row.status, row.reason) == ("failed", "INVALID_FIELD")
    assert says in row.error
    assert [request.audio.content for request in sent] == [b"RIFFb.wav"]  # the bad one never went out
    assert log.rows()["b"].matched_speakers == ["Alice"]


def test_a_voiceprint_mismatch_of_a_rows_own_speakers_fails_that_row_only(tree: Path) -> None:
    alice = str(tree / "voices" / "alice.voiceprint.json")
    mismatch = FailedPrecondition("the voiceprint was made by pyannote", reason="VOICEPRINT_MISMATCH")

    def transcribe(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
        if request.known_speakers:
            raise mismatch
        return ANSWER

    own = BatchItem(str(tree / "a.wav"), "a", {"diarize": True, "speakers": [alice]})
    plain = BatchItem(str(tree / "b.wav"), "b", {"diarize": True})
    log = ResultsLog(tree / "out" / RESULTS)
    summary = run([own, plain], transcribe, Outputs(tree / "out", ("json",)), log, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    assert (log.rows()["a"].reason, log.rows()["a"].error) == ("VOICEPRINT_MISMATCH", mismatch.details)
    # The run's own --speaker files would fail every input: that stops the run, logging nothing.
    with pytest.raises(FailedPrecondition):
        run(
            [BatchItem(str(tree / "c.wav"), "c", {"diarize": True})],
            transcribe,
            Outputs(tree / "again", ("json",)),
            ResultsLog(tree / "again" / RESULTS),
            defaults={"speakers": [alice]},
            progress=False,
        )
    assert not (tree / "again" / RESULTS).exists()


def test_rows_say_which_known_speakers_were_matched_also_when_recovered(tree: Path) -> None:
    outputs = Outputs(tree / "out", ("json",))
    item = BatchItem(str(tree / "a.wav"), "a")
    outputs.write(item, ANSWER)
    row = recovered_row(item, outputs)
    assert (row.matched_speakers, row.duration_s) == (["Alice"], 1.5)
    assert ResultRow.from_json(json.loads(json.dumps(row.to_json()))) == row
    assert ResultRow.from_json({"source": "s", "key": "k", "status": "done"}).matched_speakers == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hotword", "Ada:11"], "--hotword 'Ada:11': boost must be in (0, 10]"),
        (["--hotword", ":3"], "--hotword ':3': phrase is empty"),
        (
            ["--diarize", "--speaker", "{tmp}/nobody.voiceprint.json"],
            "--speaker: cannot read the voiceprint file",
        ),
        (["--diarize", "--speaker", "{tmp}/a.wav"], "is not a voiceprint file (made by `parakeet enroll`)"),
        (
            ["--speaker", "{tmp}/voices/alice.voiceprint.json"],
            "--speaker names speakers found by diarization: add --diarize (or diarize in the manifest)",
        ),
        (["--diarize", "--speaker-threshold", "2"], "--speaker-threshold is a cosine similarity"),
        (["--format", "rttm"], "--format rttm lists speaker turns: add --diarize or --multichannel"),
    ],
)
def test_the_runs_bad_options_are_usage_errors_before_any_work(
    tree: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tree / "out"
    argv = ["batch", str(tree / "a.wav"), "--out", str(out), *(a.format(tmp=tree) for a in args)]
    with pytest.raises(SystemExit) as caught:
        cli.main([*argv, "--dry-run"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_multichannel_alone_may_ask_rttm_and_a_manifest_may_diarize_for_the_speaker(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            [
                "batch",
                str(tree / "a.wav"),
                "--out",
                str(tree / "o"),
                "-f",
                "rttm",
                "--multichannel",
                "--dry-run",
            ]
        )
        == 0
    )
    (tree / "list.jsonl").write_text(json.dumps({"path": "a.wav", "diarize": True}) + "\n")
    alice = str(tree / "voices" / "alice.voiceprint.json")
    assert (
        cli.main(
            ["batch", str(tree / "list.jsonl"), "--out", str(tree / "o"), "--speaker", alice, "--dry-run"]
        )
        == 0
    )
    assert capsys.readouterr().out == f"todo\ta\t{tree / 'a.wav'}\ntodo\ta\t{tree / 'a.wav'}\n"


def test_runpod_jobs_carry_the_hotwords_known_speakers_and_multichannel(
    tree: Path,
    fake,  # noqa: F811  # the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = fake(lambda _input: ("COMPLETED", response_to_json(ANSWER)))
    (tree / "list.jsonl").write_text(
        json.dumps({"path": "b.wav", "hotwords": ["Lovelace"], "speakers": ["voices/bob.voiceprint.json"]})
        + "\n"
    )
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    code = cli.main(
        [
            "batch", str(tree / "a.wav"), str(tree / "list.jsonl"), "--out", str(tree / "out"),
            "--runpod", "ep", "--runpod-url", api.base, "--diarize", "--multichannel",
            "--hotword", "Kubernetes:2", "--speaker", str(tree / "voices" / "alice.voiceprint.json"),
            "--speaker-threshold", "0.9", "--concurrency", "1", "-q",
        ]
    )  # fmt: skip
    assert code == 0
    first, second = (api.inputs[f"job-{n}"] for n in range(2))
    assert first["hotwords"] == [{"phrase": "Kubernetes", "boost": 2.0}]
    assert [(s["name"], s["voiceprint"]["model"]) for s in first["known_speakers"]] == [
        ("Alice", "resemblyzer")
    ]
    assert (first["multichannel"], first["diarize"], first["speaker_match_threshold"]) == (True, True, 0.9)
    assert second["hotwords"] == [{"phrase": "Lovelace"}]
    assert [s["name"] for s in second["known_speakers"]] == ["Bob"]
    rows = [json.loads(line) for line in (tree / "out" / RESULTS).read_text().splitlines()]
    assert [row["matched_speakers"] for row in rows] == [["Alice"], ["Alice"]]
