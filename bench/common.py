"""Shared pieces of the benchmark scripts: timing, the fixture models, in-process servers, results."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"


def best_of(function: Callable[[], Any], repeats: int = 3) -> float:
    """Fastest wall time of `repeats` runs: the least noisy estimate on a shared machine."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


@dataclass
class Row:
    """One line of the results table: a measured figure, and the floor it must meet if any."""

    name: str
    value: float
    unit: str
    floor: str = ""
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({_cpu_count()} cores)"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))


def report(rows: list[Row], name: str) -> Path:
    """Print the table and write the JSON results under bench/results/."""
    print(f"\n{device_name()}")
    print(f"{'figure':<58} {'value':>12}  {'unit':<14} {'floor':<12} ok")
    for row in rows:
        ok = "" if row.passed is None else ("yes" if row.passed else "NO")
        print(f"{row.name:<58} {row.value:>12.4g}  {row.unit:<14} {row.floor:<12} {ok}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"device": device_name(), "rows": [asdict(row) for row in rows]}, indent=2))
    print(f"\nresults: {path.relative_to(REPO_ROOT)}")
    return path
