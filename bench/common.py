"""Shared pieces of the benchmark scripts: timing, interleaved ratios, servers, test audio, results."""

from __future__ import annotations

import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"
VENV_BIN = Path(sys.executable).parent

# One timed run of one side of a comparison: its wall time in seconds.
Measure = Callable[[], float]


def timed(function: Callable[[], Any]) -> Measure:
    """A Measure that times one call of `function`."""

    def measure() -> float:
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    return measure


def best_of(function: Callable[[], Any], repeats: int = 3) -> float:
    """Fastest wall time of `repeats` runs, for absolute figures (not ratios: see interleaved_ratio)."""
    return min(timed(function)() for _ in range(repeats))


@dataclass(frozen=True)
class Ratio:
    """Per-pair ratios a/b of an interleaved comparison: the median is the figure, the rest its spread."""

    ratios: list[float]
    a_s: list[float]
    b_s: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> str:
        """min-max of the per-pair ratios, as printed beside the median."""
        return f"{min(self.ratios):.3g}-{max(self.ratios):.3g}"

    def detail(self, a_name: str, b_name: str) -> dict[str, Any]:
        """What the results JSON keeps: every pair, the spread, the interquartile range, the sides."""
        quartiles = statistics.quantiles(self.ratios, n=4) if len(self.ratios) > 1 else self.ratios * 3
        return {
            "ratio_median": self.median,
            "ratio_min": min(self.ratios),
            "ratio_max": max(self.ratios),
            "ratio_iqr": [quartiles[0], quartiles[2]],
            "ratios": self.ratios,
            f"{a_name}_median_s": statistics.median(self.a_s),
            f"{b_name}_median_s": statistics.median(self.b_s),
            f"{a_name}_s": self.a_s,
            f"{b_name}_s": self.b_s,
        }


def interleaved_ratio(a: Measure, b: Measure, pairs: int) -> Ratio:
    """Measure a and b alternately, one pair at a time, and take the ratio a/b within each pair.

    Noise on a shared machine comes in bursts; runs of one side in a block put a burst on one
    side only, while a pair's two runs are seconds apart and share it. The order alternates
    (a b, b a, a b, ...) so neither side is always the one that runs right after the other.
    """
    a_s: list[float] = []
    b_s: list[float] = []
    for pair in range(pairs):
        if pair % 2 == 0:
            a_s.append(a())
            b_s.append(b())
        else:
            b_s.append(b())
            a_s.append(a())
    return Ratio([x / y for x, y in zip(a_s, b_s, strict=True)], a_s, b_s)


@dataclass
class Row:
    """One line of the results table: a measured figure, and the floor it must meet if any."""

    name: str
    value: float
    unit: str
    floor: str = ""
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    spread: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(kind: str, *options: str, timeout: float = 600.0) -> tuple[subprocess.Popen[bytes], str]:
    """A `parakeet-server KIND` process on a free loopback port, once its health says SERVING.

    Its output goes to bench/results/parakeet-server-KIND.log.
    """
    from parakeet.client import ParakeetClient

    port = free_port()
    address = f"127.0.0.1:{port}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log = RESULTS_DIR / f"parakeet-server-{kind}.log"
    with log.open("wb") as output:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [str(VENV_BIN / "parakeet-server"), kind, "--host", "127.0.0.1", "--port", str(port), *options],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    with ParakeetClient(address) as client:
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"parakeet-server {kind} exited with {process.returncode}:\n{tail}")
            try:
                if client.health(timeout=2) == "SERVING":
                    return process, address
            except Exception:  # not listening yet, or NOT_SERVING while it loads
                pass
            if time.monotonic() > deadline:
                stop_server(process)
                raise RuntimeError(f"parakeet-server {kind} not SERVING after {timeout:g} s; see {log}")
            time.sleep(0.1)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def silent_flac(seconds: float, rate: int = 16_000) -> bytes:
    """Mono 16-bit FLAC of digital silence, encoded in 10 s blocks (3 hours: ~2 MB, a few seconds)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as output:
        stream = output.add_stream("flac", rate=rate, layout="mono")
        block = np.zeros((1, rate * 10), dtype=np.int16)
        total = int(seconds * rate)
        for offset in range(0, total, block.shape[1]):
            frame = av.AudioFrame.from_ndarray(
                block[:, : min(block.shape[1], total - offset)], format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({len(os.sched_getaffinity(0))} cores)"


def report(rows: list[Row], name: str) -> Path:
    """Print the table and write the JSON results under bench/results/."""
    print(f"\n{device_name()}")
    print(f"{'figure':<58} {'value':>10} {'spread':<11}  {'unit':<14} {'floor':<10} ok")
    for row in rows:
        ok = "" if row.passed is None else ("yes" if row.passed else "NO")
        print(f"{row.name:<58} {row.value:>10.4g} {row.spread:<11}  {row.unit:<14} {row.floor:<10} {ok}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"device": device_name(), "rows": [asdict(row) for row in rows]}, indent=2))
    print(f"\nresults: {path.relative_to(REPO_ROOT)}")
    return path
