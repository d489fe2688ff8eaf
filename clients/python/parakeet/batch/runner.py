"""Running a batch through a per-request backend (embedded, a server, RunPod): a thread pool.

A backend is a `Transcribe`: one OrchestrateRequest in, its response out, `ParakeetError` (with
the service's reason) on failure. `process` does one item end to end (request, call, outputs,
row) and never raises for a bad input: the failure becomes the item's row, and the run goes on.
`run` skips what an earlier run finished (`outputs.pending`), feeds the rest to `concurrency`
threads, logs each row as it lands and draws a progress bar on a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc

from parakeet.batch.items import BatchItem, request_for
from parakeet.batch.outputs import RESULTS, Outputs, ResultRow, ResultsLog, matched_names, pending
from parakeet.errors import Internal, ParakeetError
from parakeet.v1 import orchestrator_pb2

Transcribe = Callable[[orchestrator_pb2.OrchestrateRequest], orchestrator_pb2.OrchestrateResponse]
# Attempts per item when the failure is retryable (ParakeetError.retryable: busy, warming up...).
ATTEMPTS = 3
BACKOFF_S = 1.0
# Failures that are no input's fault and would fail every other input too (a wrong token, a
# server without the service, a model that is not loaded): the run stops, logging no row for
# the item, so a rerun after the fix takes it up.
FATAL_CODES = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION}
)


@dataclass(frozen=True)
class Job:
    """What every worker of a run needs to know (picklable, for Ray's actors): where outputs go,
    in which formats, the request defaults, and the model paths for in-process engines."""

    out_dir: Path
    formats: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    model: str = ""
    pipeline: str = ""

    def outputs(self) -> Outputs:
        return Outputs(self.out_dir, self.formats)

    def log(self) -> ResultsLog:
        return ResultsLog(self.out_dir / RESULTS)


def _failed(item: BatchItem, error: ParakeetError, seconds: float) -> ResultRow:
    return ResultRow(
        item.source, item.key, "failed", seconds=seconds, error=error.details, reason=error.reason or ""
    )


def process(
    item: BatchItem,
    transcribe: Transcribe,
    outputs: Outputs,
    defaults: Mapping[str, Any],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> ResultRow:
    """Transcribe one item and write its outputs; its row, done or failed with the reason.

    A retryable failure is tried again (up to `attempts`, with a growing pause); any other
    exception from a backend is recorded as INTERNAL rather than ending the run. A failure in
    FATAL_CODES is raised: it is the run's, not the input's."""
    started = time.monotonic()
    try:
        request = request_for(item, defaults)
        for attempt in range(1, attempts + 1):
            try:
                response = transcribe(request)
                break
            except ParakeetError as error:
                if not error.retryable or attempt == attempts:
                    raise
                sleep(BACKOFF_S * 2 ** (attempt - 1))
        written = outputs.write(item, response)
    except ParakeetError as error:
        if error.code in FATAL_CODES and not _its_own(item, error):
            raise
        return _failed(item, error, time.monotonic() - started)
    except Exception as error:  # a backend's bug must not end the run; its row says what happened
        failure = Internal(f"{type(error).__name__}: {error}")
        return _failed(item, failure, time.monotonic() - started)
    seconds = time.monotonic() - started
    matched = matched_names(response.speaker_identities)
    return ResultRow(
        item.source, item.key, "done", response.duration, seconds, outputs=written, matched_speakers=matched
    )


def _its_own(item: BatchItem, error: ParakeetError) -> bool:
    """A fatal-looking failure caused by the item's own options: a voiceprint file of its own made
    by another engine fails that item only (the run's --speaker files would fail every one)."""
    return error.reason == "VOICEPRINT_MISMATCH" and bool(item.options.get("speakers"))


@dataclass
class Summary:
    """How a run went: files done/failed/skipped, audio hours, wall time, real-time factor."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    failed_before: int = 0  # of the skipped: inputs an earlier run logged as failed
    audio_s: float = 0.0
    wall_s: float = 0.0
    failures: list[ResultRow] = field(default_factory=list)

    def add(self, row: ResultRow) -> None:
        if row.status == "done":
            self.done += 1
            self.audio_s += row.duration_s
        else:
            self.failed += 1
            self.failures.append(row)

    @property
    def audio_hours(self) -> float:
        return self.audio_s / 3600

    @property
    def real_time_factor(self) -> float:
        """Wall time over audio time (0.1: ten times faster than real time); 0 without audio."""
        return self.wall_s / self.audio_s if self.audio_s > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """1 when any input of the run ends failed, in this run or an earlier one."""
        return 1 if self.failed or self.failed_before else 0

    def lines(self) -> list[str]:
        """The end-of-run report for stderr."""
        lines = [
            f"{self.done} done, {self.failed} failed, {self.skipped} skipped (done before"
            + (f", {self.failed_before} of them failed" if self.failed_before else "")
            + "); "
            f"{self.audio_hours:.3f} h of audio in {self.wall_s:.1f} s"
            + (f", real-time factor {self.real_time_factor:.3f}" if self.audio_s > 0 else "")
        ]
        lines += [f"failed: {row.source}: {row.reason or 'ERROR'}: {row.error}" for row in self.failures]
        return lines


class ProgressBar:
    """tqdm's bar on stderr with files/s, audio hours per hour and the ETA; silent when stderr is
    not a terminal (logs, pipes, CI) or when disabled."""

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        out = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.audio_s = 0.0
        self.failed = 0
        self.enabled = enabled and out.isatty()
        self._bar: Any = None
        if self.enabled:  # imported only to draw: a quiet run needs no tqdm
            from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

            self._bar = tqdm(total=total, unit="file", file=out, dynamic_ncols=True)

    def advance(self, row: ResultRow) -> None:
        self.audio_s += row.duration_s
        self.failed += row.status == "failed"
        if self._bar is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self._bar.set_postfix_str(
            f"audio {self.audio_s / elapsed:.1f} h/h, {self.failed} failed", refresh=False
        )
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run(
    items: Sequence[BatchItem],
    transcribe: Transcribe,
    outputs: Outputs,
    log: ResultsLog,
    *,
    defaults: Mapping[str, Any] | None = None,
    concurrency: int = 1,
    progress: bool = True,
    stream: TextIO | None = None,
) -> Summary:
    """Transcribe every item not finished by an earlier run, `concurrency` at a time; each row is
    logged as it lands. Bad inputs become failed rows; the run goes on. A fatal failure
    (FATAL_CODES) stops it: items not yet started are not, and the error is raised."""
    started = time.monotonic()
    todo, skipped = pending(items, outputs, log)
    summary = Summary(skipped=skipped, failed_before=failed_before(items, log))
    bar = ProgressBar(len(todo), enabled=progress, stream=stream)
    options = dict(defaults or {})
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="batch") as pool:
            queue = iter(todo)
            running: set[Future[ResultRow]] = set()

            def submit_next() -> None:
                item = next(queue, None)
                if item is not None:
                    running.add(pool.submit(process, item, transcribe, outputs, options))

            for _ in range(max(1, concurrency)):  # a bounded window: a file's bytes are read when sent
                submit_next()
            fatal: ParakeetError | None = None
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.discard(future)
                    try:
                        row = future.result()
                    except ParakeetError as error:
                        fatal = fatal or error
                        continue
                    log.append(row)
                    summary.add(row)
                    bar.advance(row)
                    if fatal is None:
                        submit_next()
            if fatal is not None:
                raise fatal
    finally:
        bar.close()
        summary.wall_s = time.monotonic() - started
    return summary


def failed_before(items: Iterable[BatchItem], log: ResultsLog) -> int:
    """How many of `items` an earlier run logged as failed."""
    rows = log.rows()
    return sum(1 for item in items if (row := rows.get(item.key)) is not None and row.status == "failed")


def rows_summary(rows: Iterable[ResultRow], skipped: int, wall_s: float) -> Summary:
    """A Summary of rows produced elsewhere (the Ray backend's driver)."""
    summary = Summary(skipped=skipped, wall_s=wall_s)
    for row in rows:
        summary.add(row)
    return summary
