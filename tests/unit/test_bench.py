"""`make bench`'s own machinery: interleaved ratios, the silent audio, the server memory figure."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import common, run, streaming
from parakeet_server.core.audio import decode_bytes
from tests.support.audio import silent_flac

REPO_ROOT = Path(__file__).resolve().parents[2]


def scripted(name: str, times: list[float], calls: list[str]) -> common.Measure:
    """A Measure that records that it ran and returns the next scripted time."""
    remaining = iter(times)

    def measure() -> float:
        calls.append(name)
        return next(remaining)

    return measure


def test_interleaved_ratio_alternates_the_sides_and_takes_the_median_of_pair_ratios() -> None:
    calls: list[str] = []
    a = scripted("a", [1.0, 1.2, 3.0, 1.1, 1.0], calls)
    b = scripted("b", [1.0, 1.0, 2.0, 1.0, 0.5], calls)
    ratio = common.interleaved_ratio(a, b, pairs=5)
    # a b, b a, a b, b a, a b: each pair's runs are adjacent, and neither side always goes first.
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert ratio.ratios == pytest.approx([1.0, 1.2, 1.5, 1.1, 2.0])
    assert ratio.median == pytest.approx(1.2)
    assert ratio.spread == "1-2"
    detail = ratio.detail("grpc", "engine")
    assert detail["ratio_median"] == pytest.approx(1.2)
    assert (detail["ratio_min"], detail["ratio_max"]) == pytest.approx((1.0, 2.0))
    assert detail["ratio_iqr"] == pytest.approx([1.05, 1.75])
    assert detail["grpc_s"] == [1.0, 1.2, 3.0, 1.1, 1.0]
    assert detail["engine_median_s"] == pytest.approx(1.0)


def test_a_noise_burst_on_one_block_does_not_move_the_median() -> None:
    """The failure mode of best-of blocks: a slow spell during one side's block sets the ratio.
    Interleaved, the burst lands on one pair, whose ratio is the max, not the median."""
    calls: list[str] = []
    a = scripted("a", [1.0, 1.0, 1.0, 1.0, 1.0], calls)
    b = scripted("b", [1.0, 1.0, 1.0, 3.0, 1.0], calls)
    ratio = common.interleaved_ratio(a, b, pairs=5)
    assert ratio.median == pytest.approx(1.0)
    assert min(ratio.ratios) == pytest.approx(1 / 3)


def test_ratio_rows_print_the_median_with_its_spread(capsys, tmp_path, monkeypatch) -> None:
    ratio = common.Ratio([0.9, 1.0, 1.3], [0.9, 1.0, 1.3], [1.0, 1.0, 1.0])
    row = run.ratio_row("1. x / y", ratio, "<= 1.05", ratio.median <= 1.05, "x", "y")
    assert (row.value, row.spread, row.passed) == (1.0, "0.9-1.3", True)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path.parent)
    common.report([row], "test")
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("1. x / y"))
    assert line.split() == ["1.", "x", "/", "y", "1", "0.9-1.3", "ratio", "<=", "1.05", "yes"]


def test_silent_flac_is_exactly_that_long_and_silent() -> None:
    flac = silent_flac(25.0)
    waveform = decode_bytes(flac)
    assert len(waveform.samples) == 25 * 16_000
    assert float(abs(waveform.samples).max()) == 0.0


def test_peak_rss_reads_the_processs_high_water_mark() -> None:
    """Read from a fresh child: this process's allocator may reuse freed pages without raising VmHWM."""
    child = subprocess.Popen(
        [sys.executable, "-c", _BALLAST_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        before = float(child.stdout.readline())
        assert child.stdout.readline().strip() == "touched"
        assert common.peak_rss_mb(child.pid) >= before + 190
    finally:
        child.kill()
        child.wait()


_BALLAST_CHILD = """
import sys
from pathlib import Path
hwm = next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM:'))
print(int(hwm.split()[1]) / 1024, flush=True)
ballast = bytearray(200 * 1024 * 1024)
ballast[::4096] = b'x' * len(ballast[::4096])
print('touched', flush=True)
sys.stdin.read()
"""


def test_bench_does_not_import_the_test_suites_conftest() -> None:
    """Not at module level, nor inside a function: bench has its own server and port helpers."""
    imported = set()
    for path in (REPO_ROOT / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert "bench.common" in imported  # the walk sees bench's imports
    assert not {name for name in imported if name == "tests.conftest" or name.startswith("tests.conftest.")}


@pytest.mark.slow
def test_server_peak_rss_measures_a_real_server_and_stops_past_the_floor(monkeypatch) -> None:
    rows = run.server_peak_rss(run.TRAINED_MODEL, [0.01, 0.005])
    assert [row.name for row in rows] == [
        "8. transcription server, 0.005 h audio: peak RSS",
        "8. transcription server, 0.005 h audio: Transcribe wall time",
        "8. transcription server, 0.01 h audio: peak RSS",
        "8. transcription server, 0.01 h audio: Transcribe wall time",
    ]
    short, long = rows[0], rows[2]
    assert 0.2 < short.value <= long.value < run.RSS_FLOOR_GB  # GB: the model and NeMo, at least
    assert short.passed and long.passed and short.floor == "<= 4"
    monkeypatch.setattr(run, "RSS_FLOOR_GB", 0.1)
    missed = run.server_peak_rss(run.TRAINED_MODEL, [0.005, 0.01])
    assert [row.passed for row in missed] == [False, None, False]
    assert math.isnan(missed[2].value)
    assert missed[2].detail == {"skipped": f"not sent: 0.005 h already peaked at {missed[0].value:.2f} GB"}


def _response(event: str = "", processed: float = 0.0, **fields: Any) -> Any:
    """A StreamingTranscribeResponse with `event` set from `fields` (no event: progress only)."""
    from parakeet.v1 import streaming_pb2, transcription_pb2

    response = transcription_pb2.StreamingTranscribeResponse(processed_seconds=processed)
    if event == "interim":
        response.interim.CopyFrom(streaming_pb2.InterimResult(**fields))
    elif event == "final_result":
        response.final_result.CopyFrom(streaming_pb2.FinalResult(**fields))
    elif event == "summary":
        response.summary.CopyFrom(streaming_pb2.StreamingSummary(**fields))
    return response


def _streamed() -> streaming.Streamed:
    """Two utterances heard by a client whose audio time 0 is wall clock 100.0."""
    at = 100.0
    return streaming.Streamed(
        at,
        [
            streaming.Received(at + 2.0, _response("interim", 1.9, text="hi", start=0.5)),
            streaming.Received(at + 2.4, _response("interim", 2.3, text="hi there", start=0.5)),
            streaming.Received(at + 3.0, _response("final_result", 2.7, text="hi there", start=0.5, end=1.5)),
            streaming.Received(at + 3.2, _response(processed=2.7)),
            streaming.Received(at + 5.5, _response("interim", 5.4, text="bye", start=4.0)),
            streaming.Received(at + 7.0, _response("final_result", 6.0, text="bye", start=4.0, end=4.8)),
            streaming.Received(at + 7.5, _response("summary", 6.0, duration=6.0)),
        ],
    )


def test_streamed_latencies_are_arrivals_minus_the_wall_time_of_their_audio_time() -> None:
    streamed = _streamed()
    assert streamed.final_latencies() == pytest.approx([3.0 - 1.5, 7.0 - 4.8])
    assert streamed.final_latencies(after_end_s=0.4) == pytest.approx([1.1, 1.8])
    # Only an utterance's first interim counts: the second "hi there" is not a new utterance.
    assert streamed.first_interims() == [(102.0, 0.5), (105.5, 4.0)]
    assert streamed.first_interim_latencies() == pytest.approx([1.5, 1.5])
    # Most trailing: at 3.2 s, 2.7 s fed (0.5 s behind). At 7.0 s the audio (6 s) has all been
    # sent and fed: the final's wait after the audio ended is not lag.
    assert streamed.max_lag() == pytest.approx(0.5)


def test_latency_against_the_reference_uses_the_nearest_turn_bound_within_a_second() -> None:
    from eval.synth import Conversation, RefTurn

    talk = Conversation(
        np.zeros(16_000, dtype=np.float32),
        [RefTurn("spk0", 0.4, 1.7, "hi there"), RefTurn("spk1", 3.9, 5.2, "bye")],
        "t",
    )
    finals, interims = streaming.against_reference(_streamed(), talk)
    assert finals == pytest.approx([3.0 - 1.7, 7.0 - 5.2])
    assert interims == pytest.approx([2.0 - 0.4, 5.5 - 3.9])
    assert streaming.nearest(10.0, [0.4, 3.9]) is None
    assert streaming.percentile([], 0.5) != streaming.percentile([], 0.5)  # nan: nothing measured
    assert streaming.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)


def test_the_streaming_figures_are_selectable() -> None:
    assert run.figure_list("9,10,11") == {9, 10, 11} == streaming.STREAMING_FIGURES
