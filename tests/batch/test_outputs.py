"""Batch outputs and the results log: atomic files, one row per input, what a rerun skips after a
kill (a row cut short, outputs written without their row), and the runner's handling of failures."""

from __future__ import annotations

import io
import json

import pytest

from parakeet.batch.items import BatchItem
from parakeet.batch.outputs import Outputs, ResultRow, ResultsLog, parse_formats, pending
from parakeet.batch.runner import ProgressBar, process, run
from parakeet.errors import InvalidArgument, Unauthenticated, Unavailable
from parakeet.v1 import audio_pb2, orchestrator_pb2

RESPONSE = orchestrator_pb2.OrchestrateResponse(
    text="hello there general",
    segments=[
        audio_pb2.Segment(start=0.0, end=1.0, text="hello there", speaker="SPEAKER_00"),
        audio_pb2.Segment(start=1.2, end=2.0, text="general", speaker="SPEAKER_01"),
    ],
    speaker_turns=[
        audio_pb2.SpeakerTurn(start=0.0, end=1.0, speaker="SPEAKER_00"),
        audio_pb2.SpeakerTurn(start=1.2, end=2.0, speaker="SPEAKER_01"),
    ],
    duration=2.5,
    response_format=audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON,
)


def test_parse_formats_keeps_order_once_and_names_the_choices() -> None:
    assert parse_formats("srt, JSON,txt,srt") == ("srt", "json", "text")
    with pytest.raises(
        ValueError, match="no batch format 'docx'; use one or more of: json, text, srt, vtt, rttm"
    ):
        parse_formats("json,docx")


def test_write_renders_every_format_from_one_response_and_leaves_no_temporary_files(tmp_path) -> None:
    outputs = Outputs(tmp_path, ("json", "text", "srt", "vtt", "rttm"))
    item = BatchItem("/x/my call.wav", "dir/my call")
    assert not outputs.is_complete(item)
    written = outputs.write(item, RESPONSE)
    assert written == [
        "dir/my call.json",
        "dir/my call.txt",
        "dir/my call.srt",
        "dir/my call.vtt",
        "dir/my call.rttm",
    ]
    assert outputs.is_complete(item)
    assert sorted(path.name for path in (tmp_path / "dir").iterdir()) == sorted(name[4:] for name in written)
    folder = tmp_path / "dir"
    assert json.loads((folder / "my call.json").read_text())["duration"] == 2.5
    assert (folder / "my call.txt").read_text() == "SPEAKER_00: hello there\nSPEAKER_01: general\n"
    assert (folder / "my call.srt").read_text() == (
        "1\n00:00:00,000 --> 00:00:01,000\nSPEAKER_00: hello there\n\n"
        "2\n00:00:01,200 --> 00:00:02,000\nSPEAKER_01: general\n"
    )
    assert (
        (folder / "my call.vtt")
        .read_text()
        .startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v SPEAKER_00>")
    )
    assert (folder / "my call.rttm").read_text().splitlines()[0] == (
        "SPEAKER my_call 1 0.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>"
    )


def test_the_log_drops_a_row_cut_short_and_keeps_one_row_per_key(tmp_path) -> None:
    path = tmp_path / "results.jsonl"
    log = ResultsLog(path)
    log.append(ResultRow("a.wav", "a", "done", 1.0, 0.1, outputs=["a.json"]))
    log.append(ResultRow("a.wav", "a", "failed", error="again"))  # a key is logged once
    with path.open("a") as handle:
        handle.write('{"source": "b.wav", "key": "b", "sta')  # killed mid-write
    again = ResultsLog(path)
    assert list(again.rows()) == ["a"]
    assert path.read_text().count("\n") == 1 and path.read_text().endswith("\n")
    again.append(ResultRow("b.wav", "b", "failed", error="bad", reason="AUDIO_UNDECODABLE"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(row["key"], row["status"], row["reason"]) for row in rows] == [
        ("a", "done", ""),
        ("b", "failed", "AUDIO_UNDECODABLE"),
    ]


def test_pending_skips_logged_items_and_logs_complete_ones_without_transcribing(tmp_path) -> None:
    outputs = Outputs(tmp_path, ("json", "srt"))
    log = ResultsLog(tmp_path / "results.jsonl")
    logged, complete, half, fresh = (
        BatchItem(f"{k}.wav", k) for k in ("logged", "complete", "half", "fresh")
    )
    log.append(ResultRow("logged.wav", "logged", "failed", reason="AUDIO_MISSING"))
    outputs.write(complete, RESPONSE)  # killed after its outputs, before its row
    (tmp_path / "half.json").write_text("{}")  # killed between two formats
    (tmp_path / ".half.srt.parakeet-tmp-1-2").write_text("partial")  # killed mid-write
    todo, skipped = pending([logged, complete, half, fresh], outputs, log)
    assert (todo, skipped) == ([half, fresh], 2)
    assert log.get("complete") == ResultRow(
        "complete.wav", "complete", "done", duration_s=2.5, outputs=["complete.json", "complete.srt"]
    )
    assert not (tmp_path / ".half.srt.parakeet-tmp-1-2").exists()


def test_process_retries_a_retryable_failure_and_records_the_reason_of_a_final_one(tmp_path) -> None:
    outputs = Outputs(tmp_path, ("json",))
    errors = [
        Unavailable("warming up", reason="WARMING_UP"),
        InvalidArgument("not audio", reason="AUDIO_UNDECODABLE"),
    ]
    calls, pauses = [], []

    def transcribe(request):
        calls.append(request)
        raise errors.pop(0)

    item = BatchItem(str(tmp_path / "x.wav"), "x")
    (tmp_path / "x.wav").write_bytes(b"RIFF")
    row = process(item, transcribe, outputs, {}, sleep=pauses.append)
    assert (row.status, row.reason, row.error, row.outputs) == (
        "failed",
        "AUDIO_UNDECODABLE",
        "not audio",
        [],
    )
    assert (len(calls), pauses) == (2, [1.0])


def test_a_fatal_failure_stops_the_run_and_logs_no_row_for_it(tmp_path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.wav").write_bytes(b"RIFF")
    items = [BatchItem(str(tmp_path / f"{name}.wav"), name) for name in ("a", "b", "c")]

    def transcribe(request):
        raise Unauthenticated("a bearer token is required")

    log = ResultsLog(tmp_path / "out" / "results.jsonl")
    with pytest.raises(Unauthenticated, match="a bearer token is required"):
        run(items, transcribe, Outputs(tmp_path / "out", ("json",)), log, progress=False)
    assert log.rows() == {}


def test_the_progress_bar_is_silent_off_a_terminal_and_drawn_on_one() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        bar = ProgressBar(2, stream=stream)
        bar.advance(ResultRow("a", "a", "done", duration_s=3600.0))
        bar.advance(ResultRow("b", "b", "failed", reason="AUDIO_MISSING"))
        bar.close()
        text = stream.getvalue()
        assert (("2/2" in text) and ("1 failed" in text) and ("h/h" in text)) is drawn, text
        assert (text == "") is not drawn
