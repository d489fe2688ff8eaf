"""The `parakeet` CLI's embedded mode: the orchestrator servicer over in-process engines.

`parakeet transcribe FILE` without --server or --runpod runs the same servicer and engines
`parakeet-server orchestrator --backend inprocess` serves, so every path gives the same
transcript. The client distribution must not import this package (it installs without torch,
NeMo or pyannote), so the server distribution declares `orchestrate` below as the entry point
`orchestrate` in group `parakeet.embedded` and the CLI looks it up; without the server installed the CLI
says what to install instead.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from parakeet.errors import FailedPrecondition, ParakeetError
from parakeet.v1 import diarization_pb2, orchestrator_pb2, streaming_pb2

# The command that installs what this mode loads: the models' libraries with the server.
INSTALL = "pip install 'parakeet-grpc[asr,diarization]'"

Step = Callable[[str], AbstractContextManager[None]]


def _no_progress(_label: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def orchestrate(
    request: orchestrator_pb2.OrchestrateRequest,
    *,
    model: str = "",
    pipeline: str = "",
    timeout: float | None = None,
    verbose: bool = False,
    step: Step = _no_progress,
) -> orchestrator_pb2.OrchestrateResponse:
    """Load the models (pyannote only with `request.diarize`) and answer `request` in this process.

    `step(label)` wraps the model load and the call, for the CLI's progress lines. Failures are
    the client's `ParakeetError` with the reason the servers would send; a missing model stack
    is FailedPrecondition naming what to install."""
    _quiet_libraries(verbose)
    try:
        from parakeet_server.core.context import JobContext
        from parakeet_server.core.errors import ServiceError
        from parakeet_server.orchestrator.servicer import OrchestratorServicer
        from parakeet_server.orchestrator.wiring import embedded_backends
    except ImportError as error:
        raise _missing_stack(error) from None
    try:
        backends = embedded_backends(model, pipeline, diarization=request.diarize)
        with step("loading the models" if request.diarize else "loading the model"):
            backends.warm_up()
        servicer = OrchestratorServicer(backends, max_concurrent_calls=1)
        with step("transcribing and diarizing" if request.diarize else "transcribing"):
            return servicer.Orchestrate(request, JobContext(timeout))
    except ServiceError as error:
        raise ParakeetError.for_code(error.code, error.message, reason=error.reason) from None
    except ImportError as error:
        raise _missing_stack(error) from None


def orchestrator(
    *,
    model: str = "",
    pipeline: str = "",
    diarize: bool = True,
    concurrency: int = 1,
    timeout: float | None = None,
    verbose: bool = False,
    step: Step = _no_progress,
) -> Callable[[orchestrator_pb2.OrchestrateRequest], orchestrator_pb2.OrchestrateResponse]:
    """Load the models once (pyannote only with `diarize`) and return a function answering
    OrchestrateRequests in this process: `parakeet batch`'s embedded backend, which calls it
    once per file from `concurrency` threads. Failures are `ParakeetError` with the servers'
    reasons; a missing model stack is FailedPrecondition naming what to install."""
    _quiet_libraries(verbose)
    try:
        from parakeet_server.core.context import JobContext
        from parakeet_server.core.errors import ServiceError
        from parakeet_server.orchestrator.servicer import OrchestratorServicer
        from parakeet_server.orchestrator.wiring import embedded_backends
    except ImportError as error:
        raise _missing_stack(error) from None
    try:
        backends = embedded_backends(model, pipeline, diarization=diarize)
        with step("loading the models" if diarize else "loading the model"):
            backends.warm_up()
    except ServiceError as error:
        raise ParakeetError.for_code(error.code, error.message, reason=error.reason) from None
    except ImportError as error:
        raise _missing_stack(error) from None
    servicer = OrchestratorServicer(backends, max_concurrent_calls=max(1, concurrency))

    def transcribe(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
        if request.diarize and not diarize:
            raise FailedPrecondition(
                "this run loaded no diarization pipeline; give --diarize to the run to diarize any file",
                reason="MODEL_NOT_LOADED",
            )
        try:
            return servicer.Orchestrate(request, JobContext(timeout))
        except ServiceError as error:
            raise ParakeetError.for_code(error.code, error.message, reason=error.reason) from None

    return transcribe


class _LocalCall:
    """What serve_live asks of a gRPC call, for a stream with no gRPC underneath: the caller
    closing the response iterator is its cancellation."""

    def __init__(self) -> None:
        self.active = True
        self._callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._callbacks.append(callback)
        return True

    def is_active(self) -> bool:
        return self.active

    def end(self) -> None:
        self.active = False
        for callback in self._callbacks:
            callback()


def stream(
    config: streaming_pb2.StreamingConfig,
    chunks: Iterable[bytes],
    *,
    model: str = "",
    pipeline: str = "",
    verbose: bool = False,
    step: Step = _no_progress,
) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]:
    """A live StreamingOrchestrate in this process: the same servicer, sessions and merge as
    `parakeet-server orchestrator --backend inprocess`, fed `chunks` in `config.audio_format`.

    The models load before this returns (inside `step`), so a failure to load is raised here;
    results then come as the chunks are consumed. Closing the iterator cancels the stream."""
    _quiet_libraries(verbose)
    try:
        from parakeet_server.core.errors import ServiceError
        from parakeet_server.orchestrator.servicer import OrchestratorServicer
        from parakeet_server.orchestrator.wiring import embedded_backends
    except ImportError as error:
        raise _missing_stack(error) from None
    try:
        backends = embedded_backends(model, pipeline, diarization=config.diarize, live=True)
        with step("loading the models" if config.diarize else "loading the model"):
            backends.warm_up()
    except ServiceError as error:
        raise ParakeetError.for_code(error.code, error.message, reason=error.reason) from None
    servicer = OrchestratorServicer(backends, max_concurrent_calls=1)
    return _responses(servicer, config, chunks)


def _responses(
    servicer: Any, config: streaming_pb2.StreamingConfig, chunks: Iterable[bytes]
) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]:
    from parakeet_server.core.errors import ServiceError

    def requests() -> Iterator[orchestrator_pb2.StreamingOrchestrateRequest]:
        yield orchestrator_pb2.StreamingOrchestrateRequest(config=config)
        for chunk in chunks:
            yield orchestrator_pb2.StreamingOrchestrateRequest(audio=chunk)

    call = _LocalCall()
    try:
        yield from servicer.StreamingOrchestrate(requests(), call)
    except ServiceError as error:
        raise ParakeetError.for_code(error.code, error.message, reason=error.reason) from None
    finally:
        call.end()


def _missing_stack(error: ImportError) -> FailedPrecondition:
    return FailedPrecondition(
        f"embedded mode needs the model stack, which cannot be imported ({error}); "
        f"{INSTALL}, or use --server HOST:PORT or --runpod ENDPOINT_ID"
    )


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _quiet_libraries(verbose: bool) -> None:
    """Keep NeMo's, torch's and pyannote's load-time chatter off stderr unless --verbose.

    NeMo logs through its own non-propagating "nemo_logger" (and re-sets its level on every
    load), so a filter on that logger is what keeps it to errors; the rest go through the root.
    """
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("nemo_logger").addFilter(_errors_only)
    warnings.filterwarnings("ignore")


def enroll(
    request: diarization_pb2.EnrollRequest,
    *,
    pipeline: str = "",
    timeout: float | None = None,
    verbose: bool = False,
    step: Step = _no_progress,
) -> diarization_pb2.EnrollResponse:
    """A voiceprint made in this process by `pipeline`'s embedding model ("offline": the offline
    backend's; default: env DIARIZATION_PIPELINE or pyannote). Voiceprints match only on a
    server running the same engine."""
    _quiet_libraries(verbose)
    try:
        import os

        from parakeet_server.core.context import JobContext
        from parakeet_server.core.errors import ServiceError
        from parakeet_server.diarization.pyannote_engine import DEFAULT_PIPELINE
        from parakeet_server.diarization.selection import build_engine
        from parakeet_server.diarization.servicer import DiarizationServicer
    except ImportError as error:
        raise _missing_stack(error) from None
    try:
        engine = build_engine(pipeline or os.environ.get("DIARIZATION_PIPELINE", "") or DEFAULT_PIPELINE)
        with step("loading the speaker model"):
            engine.load()
        with step("enrolling"):
            return DiarizationServicer(engine).Enroll(request, JobContext(timeout))
    except ServiceError as error:
        raise ParakeetError.for_code(error.code, error.message, reason=error.reason) from None
    except ImportError as error:
        raise _missing_stack(error) from None
