"""Process-wide settings every entry point applies first, so that no run leaves files behind.

Call `prepare_process()` at the very start of a process's main function, before torch, NeMo,
pyannote or onnxruntime are imported (the services import them lazily, when a model loads):

- onnxruntime starts Microsoft's 1DS telemetry when it initialises: a `.ses` session file in
  $TMPDIR, and a SQLite database and device id under ~/.cache/Microsoft/DeveloperTools/.onnxruntime.
  `ORT_DISABLE_TELEMETRY=1`, set before it loads, stops all three (onnxruntime's documented switch;
  `ort.disable_telemetry_events()` comes too late: the session file is written at import).
- torch writes `tmpXXXXXXXX/_remote_module_non_scriptable.py` into the temp directory when
  torch.distributed.nn is imported (lightning, NeMo and pyannote import it) and removes it only at
  a normal interpreter exit; NeMo's import-time `torch.compile` creates an inductor cache
  directory `torchinductor_<user>` there that nothing removes. Neither has a switch, so the
  process gets a scratch temp directory of its own (TMPDIR and `tempfile.tempdir` point into it)
  which is removed at exit, with whatever any library left in it.
- Both only help when the process exits through the interpreter (atexit), never by a signal's
  default action: a SIGTERM that arrives before a server installs its own drain handler exits
  the process with status 0 through SystemExit instead of dying of the signal (status 143).

The RunPod handlers call this first; the gRPC servers' entry point (parakeet_server/cli.py) should too.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import tempfile
from types import FrameType

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "parakeet-"
_scratch: str | None = None


def exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    """Leave through interpreter shutdown (atexit handlers run, temp files go), with status 0.

    Also what a server's drain handler hands the signal back to once it has drained (uvicorn
    re-raises it to the handler it found), so a drained process exits 0 rather than 143."""
    log.info("received %s; exiting", signal.Signals(signum).name)
    raise SystemExit(0)


def _remove_scratch(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def prepare_process() -> str:
    """Apply the settings above once per process; returns the scratch temp directory."""
    global _scratch
    if _scratch is not None:
        return _scratch
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    atexit.register(_remove_scratch, scratch)
    os.environ["TMPDIR"] = scratch  # libraries in C (and child processes) read the variable
    tempfile.tempdir = scratch  # Python's tempfile may have cached the old one already
    signal.signal(signal.SIGTERM, exit_on_signal)
    _scratch = scratch
    return scratch
