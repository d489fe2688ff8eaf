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
from collections.abc import Callable
from contextlib import AbstractContextManager

from parakeet.errors import FailedPrecondition, ParakeetError
from parakeet.v1 import orchestrator_pb2

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
