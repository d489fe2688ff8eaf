"""`parakeet batch --ray [ADDRESS]`: the archive as a Ray Data dataset, the engines held in actors.

Why Ray Data: it spreads the file list over a cluster's GPUs (or a laptop's CPUs) with
back-pressure and streams results back as they finish. Each actor loads the in-process
orchestrator ONCE, with the embedded backend's loader (`parakeet_server.embedded.orchestrator`),
so the files are the ones `parakeet batch` without --ray writes; it transcribes its items and
WRITES their output files itself (parakeet.batch.runner.process): documents never travel through
the object store, only the small results rows do. The driver (`parakeet batch --ray`,
parakeet.batch.command) appends those rows to results.jsonl and draws the progress bar, so a kill
and a rerun behave exactly as with the other backends.

Paths: local inputs and --out must be on a filesystem every node sees (one machine, NFS, a
mounted bucket); URL inputs are fetched by the actors through the server's SSRF-guarded fetcher.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from parakeet.batch.items import BatchItem, options_for
from parakeet.batch.outputs import ResultRow
from parakeet.batch.runner import Job, process
from parakeet.errors import FailedPrecondition, Internal, ParakeetError

# A local Ray (no ADDRESS) gets this many CPUs: the "local, 2 CPUs".
LOCAL_CPUS = 2
# The environment the actors need from the driver's: engine settings, model caches and tokens,
# the URL fetcher's allow-list. A local Ray inherits it anyway; a cluster's workers get it here.
FORWARDED_PREFIXES = ("PARAKEET_", "TRANSCRIPTION_", "DIARIZATION_", "ORCHESTRATOR_", "HF_", "HUGGINGFACE_")
INSTALL = "pip install 'parakeet-grpc[asr,diarization,ray]'"
# How often a cluster's file is tried again after its actor died (a node lost, out of memory).
TASK_RETRIES = 3
# The column an actor's rows travel in (JSON text: one row per item).
_ROW = "row"
_FATAL = "fatal"


def run(
    items: Sequence[BatchItem],
    job: Job,
    address: str | None = None,
    *,
    actors: int | None = None,
    num_cpus: float = 1.0,
    num_gpus: float | None = None,
    verbose: bool = False,
) -> Iterator[ResultRow]:
    """Transcribe exactly `items` (the caller has dropped the finished ones: parakeet.batch.outputs
    .pending) on Ray and yield each one's row as its actor finishes it, in no particular order.

    `address`: a running cluster ("auto", "ray://host:10001", "host:6379"), or None for a local
    Ray with LOCAL_CPUS CPUs. Each actor holds one copy of the models and asks for `num_cpus`
    CPUs and `num_gpus` GPUs (default: one GPU when the cluster has any, else none); `actors`
    caps how many run (default: as many as the resources allow). A failure that is the run's,
    not an input's (no model, missing stack) is raised as ParakeetError after the rows so far."""
    if not items:
        return
    ray = _import_ray()
    started_here = _connect(ray, address, verbose)
    try:
        resources = ray.cluster_resources()
        gpus = num_gpus if num_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        size = _pool_size(resources, num_cpus, gpus, actors, len(items))
        diarize = any(bool(options_for(item, job.defaults).get("diarize")) for item in items)
        dataset = ray.data.from_items(
            [{"item": json.dumps(item.to_json())} for item in items], override_num_blocks=len(items)
        )
        results = dataset.map_batches(
            _Worker,
            fn_constructor_kwargs={"job": job, "diarize": diarize, "verbose": verbose},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=num_cpus,
            num_gpus=gpus,
            batch_format="numpy",
            **_restarts(address),
        )
        fatal: dict[str, Any] | None = None
        try:
            for output in results.iter_rows():
                if output[_FATAL]:
                    fatal = fatal or json.loads(output[_FATAL])
                    continue
                yield ResultRow.from_json(json.loads(output[_ROW]))
        except ray.exceptions.RayError as error:  # an actor died (out of memory?) past its retries
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise Internal(
                f"the Ray run failed ({type(error).__name__}: {first}); the files done so far are "
                "logged, rerun the command to resume (--verbose shows the workers' logs)"
            ) from None
        if fatal is not None:
            raise ParakeetError.for_code(_code(fatal["code"]), fatal["message"], reason=fatal["reason"])
    finally:
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise FailedPrecondition(
            f"--ray needs Ray Data, which cannot be imported ({error}); {INSTALL}"
        ) from None
    return ray


def _connect(ray: Any, address: str | None, verbose: bool) -> bool:
    """Join the cluster at `address`, or start a local Ray; True if this call started Ray (and
    so shuts it down at the end). Ray's own logs stay in its session directory unless verbose."""
    if ray.is_initialized():
        return False
    forwarded = {name: value for name, value in os.environ.items() if name.startswith(FORWARDED_PREFIXES)}
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "log_to_driver": verbose,
        "runtime_env": {"env_vars": forwarded} if address else None,
    }
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=LOCAL_CPUS, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ParakeetError.for_code(
            _code("UNAVAILABLE"), f"cannot start or join {where}: {error}", reason="UNAVAILABLE"
        ) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver draws its own bar, in files and audio hours
    context.print_on_execution_start = False
    if not verbose:
        for handler in logging.getLogger("ray.data").handlers:
            if not hasattr(handler, "baseFilename"):  # the console handler; the file log stays
                handler.setLevel(logging.ERROR)
    return True


def _pool_size(
    resources: dict[str, float], num_cpus: float, gpus: float, actors: int | None, items: int
) -> int:
    """How many actors (model copies): what the cluster's CPUs and GPUs hold, capped by `actors`
    and by the number of items."""
    fits = int(resources.get("CPU", 1) // num_cpus) if num_cpus > 0 else items
    if gpus > 0:
        fits = min(fits, int(resources.get("GPU", 0) // gpus))
    size = min(fits, actors) if actors else fits
    return max(1, min(size, items))


def _restarts(address: str | None) -> dict[str, Any]:
    """A local actor that dies is not restarted (the run stops and a rerun resumes); on a cluster
    an actor whose node went away is restarted (Ray Data's default) and its file tried again, up
    to TASK_RETRIES times rather than Ray Data's forever, so a file that kills every actor it
    meets (out of memory) ends the run instead of looping. Ray 2.60 logs an error line at every
    run that a restarted Ray Data actor might lose its constructor arguments; the local run, not
    restarting, has no such line. Both are passed as map_batches' **ray_remote_args, which 2.60
    deprecates (still honoured; the warning is silenced, the version pinned)."""
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated", category=Warning)
    if address:
        return {"max_task_retries": TASK_RETRIES}
    return {"max_restarts": 0}


def _code(name: str) -> Any:
    import grpc

    return getattr(grpc.StatusCode, name, grpc.StatusCode.INTERNAL)


class _Worker:
    """One Ray actor: the models loaded once in __init__, then one item per call, its outputs
    written here and its row returned. A failure to load is remembered and answered for every
    item as the run's fatal error (Ray would otherwise restart the actor and fail the same way)."""

    def __init__(self, job: Job, diarize: bool, verbose: bool) -> None:
        from parakeet_server import embedded

        self.job = job
        self.outputs = job.outputs()
        self.fatal = ""
        try:
            self.transcribe = embedded.orchestrator(
                model=job.model, pipeline=job.pipeline, diarize=diarize, verbose=verbose
            )
        except ParakeetError as error:
            self.fatal = _fatal_json(error)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        rows: list[str] = []
        fatal: list[str] = []
        for text in batch["item"]:
            item = BatchItem.from_json(json.loads(str(text)))
            if self.fatal:
                rows.append("")
                fatal.append(self.fatal)
                continue
            try:
                row = process(item, self.transcribe, self.outputs, self.job.defaults)
            except ParakeetError as error:  # FATAL_CODES: the run's failure, not the input's
                rows.append("")
                fatal.append(_fatal_json(error))
                continue
            rows.append(json.dumps(row.to_json()))
            fatal.append("")
        return {_ROW: rows, _FATAL: fatal}


def _fatal_json(error: ParakeetError) -> str:
    return json.dumps({"code": error.code.name, "message": error.details, "reason": error.reason or ""})
