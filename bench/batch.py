"""`make bench` figure 12: `parakeet batch` throughput, embedded and on a local Ray, same files.

    python -m bench.run --figures 12

The archive is tests/support/batch_corpus.py's (short espeak utterances, a few words each, plus
its three corrupt files), transcribed with diarization by the trained tiny TDT and the offline
diarization backend, written as json and srt. Runs alternate, embedded then Ray, Ray then
embedded, ... (bench.common.interleaved_ratio), each into a fresh output directory:

- embedded: the models loaded once in this process beforehand (timed once: the second embedded
  row adds it to a run, as a fresh `parakeet batch` pays it), then parakeet.batch.runner.run at
  its default concurrency (1 file at a time; torch uses every core for it).
- Ray local: a local Ray with 2 CPUs started once beforehand; each run is what `--ray` does:
  2 actors (1 CPU, 1 torch thread each) load the models, then take files one at a time. Its
  whole-run figure includes the actors' model loads; its steady figure counts from the first row
  to the last, the rate once the actors are up.

Files per hour = files transcribed (done or failed: every one was sent) / wall seconds x 3600.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Row, interleaved_ratio
from eval.run import FIXTURE_MODEL as TRAINED_MODEL
from parakeet.batch import BatchItem, Job, expand, run
from parakeet_server import batch_ray
from tests.support.batch_corpus import build_batch_corpus

BATCH_FIGURES = {12}
FORMATS = ("json", "srt")
PIPELINE = "offline"
FILES = 60  # 57 utterances and the 3 corrupt files


class Runs:
    """The two backends over one archive, each run into a fresh directory; what each run took."""

    def __init__(self, root: Path, items: list[BatchItem]) -> None:
        from parakeet_server import embedded

        self.root = root
        self.items = items
        self.defaults = {"diarize": True}
        started = time.perf_counter()
        self.transcribe = embedded.orchestrator(model=str(TRAINED_MODEL), pipeline=PIPELINE, diarize=True)
        self.load_s = time.perf_counter() - started
        self.embedded_s: list[float] = []
        self.ray_s: list[float] = []
        self.ray_steady_s: list[float] = []
        self.audio_s = 0.0
        self.runs = 0

    def job(self, name: str) -> Job:
        self.runs += 1
        out = self.root / f"{name}-{self.runs}"
        return Job(out, FORMATS, self.defaults, str(TRAINED_MODEL), PIPELINE)

    def embedded(self) -> float:
        job = self.job("embedded")
        started = time.perf_counter()
        summary = run(
            self.items, self.transcribe, job.outputs(), job.log(), defaults=self.defaults, progress=False
        )
        elapsed = time.perf_counter() - started
        self.audio_s = summary.audio_s
        self.embedded_s.append(elapsed)
        shutil.rmtree(job.out_dir)
        return elapsed

    def ray(self) -> float:
        job = self.job("ray")
        log = job.log()
        arrivals: list[float] = []
        started = time.perf_counter()
        for row in batch_ray.run(self.items, job):
            log.append(row)
            arrivals.append(time.perf_counter())
        elapsed = time.perf_counter() - started
        if len(arrivals) != len(self.items):
            raise RuntimeError(f"Ray returned {len(arrivals)} rows for {len(self.items)} files")
        self.ray_s.append(elapsed)
        self.ray_steady_s.append((arrivals[-1] - arrivals[0]) / (len(arrivals) - 1))
        shutil.rmtree(job.out_dir)
        return elapsed


def figures(pairs: int = 3, files: int = FILES) -> list[Row]:
    """Figure 12: files per hour through each backend, and the ratio of their run times."""
    import ray

    root = Path(tempfile.mkdtemp(prefix="parakeet-bench-batch-"))
    try:
        corpus = build_batch_corpus(root / "archive", count=files)
        items = expand([str(corpus.root)])
        runs = Runs(root, items)
        started_ray = time.perf_counter()
        batch_ray._connect(ray, None, verbose=False)
        ray_start_s = time.perf_counter() - started_ray
        try:
            ratio = interleaved_ratio(runs.ray, runs.embedded, pairs)
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    count = len(items)
    detail = {
        "files": count,
        "corrupt": len(corpus.corrupt),
        "audio_s": runs.audio_s,
        "formats": list(FORMATS),
        "diarize": True,
        "embedded_model_load_s": runs.load_s,
        "ray_init_s": ray_start_s,
        "embedded_s": runs.embedded_s,
        "ray_s": runs.ray_s,
        "ray_steady_s_per_file": runs.ray_steady_s,
    }
    per_hour = 3600 * count
    return [
        Row(
            f"12. batch embedded ({count} files, {runs.audio_s / count:.1f} s each): files/hour",
            per_hour / statistics.median(runs.embedded_s),
            "files/h",
            detail=detail,
        ),
        Row(
            "12. batch embedded: files/hour, model load included",
            per_hour / (statistics.median(runs.embedded_s) + runs.load_s),
            "files/h",
            detail=detail,
        ),
        Row(
            "12. batch Ray local (2 actors): files/hour, whole run",
            per_hour / statistics.median(runs.ray_s),
            "files/h",
            detail=detail,
        ),
        Row(
            "12. batch Ray local (2 actors): files/hour once loaded",
            3600 / statistics.median(runs.ray_steady_s),
            "files/h",
            detail=detail,
        ),
        Row(
            "12. batch run time: Ray local / embedded",
            ratio.median,
            "ratio",
            detail=ratio.detail("ray", "embedded"),
            spread=ratio.spread,
        ),
    ]
