"""Shared pieces of the benchmark scripts: timing, interleaved ratios, servers, results.

Ports, processes and test audio come from tests/support, which the test suites share (bench runs
from the repository root, `python -m bench.run`, so `tests` imports as a package)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support import servers
from tests.support.servers import REPO_ROOT, Spawned

RESULTS_DIR = REPO_ROOT / "bench" / "results"

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


def start_server(kind: str, *options: str, timeout: float = 600.0) -> tuple[Spawned, str]:
    """A `parakeet-server KIND` process on a free loopback port, once its health says SERVING.

    Its output goes to bench/results/parakeet-server-KIND.log, kept beside the results.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return servers.start_server(
        kind, *options, log_path=RESULTS_DIR / f"parakeet-server-{kind}.log", timeout=timeout
    )


def stop_server(process: Spawned) -> None:
    """SIGTERM and 30 s to drain, as an orchestrator would stop it; SIGKILL after that."""
    servers.stop_process(process, grace=30.0)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


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
