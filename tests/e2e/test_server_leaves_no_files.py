"""`parakeet-server` exits 0 on SIGTERM and leaves nothing in TMPDIR or HOME (issue #14, item 9).

The whole local stack (`all`) with the offline diarization backend loads torch, NeMo and
onnxruntime: before `prepare_process` ran first, torch left `tmp*/_remote_module_non_scriptable.py`
and an inductor cache in TMPDIR, and onnxruntime its `.ses` session file there and a telemetry
database under HOME.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.servers import VENV_BIN, free_port, start_process, stop_process, wait_for_health

ORCHESTRATOR = "parakeet.v1.OrchestratorService"


def _files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_all_drains_to_exit_0_and_leaves_no_files(tdt_model_path: Path, tmp_path: Path) -> None:
    tmpdir, home = tmp_path / "tmp", tmp_path / "home"
    tmpdir.mkdir()
    home.mkdir()
    ports = {name: free_port() for name in ("transcription", "diarization", "orchestrator")}
    process = start_process(
        [
            str(VENV_BIN / "parakeet-server"),
            "all",
            "--model",
            str(tdt_model_path),
            "--pipeline",
            "offline",
            *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
        ],
        tmp_path / "all.log",
        {"TMPDIR": str(tmpdir), "HOME": str(home), "TRANSCRIPTION_DEVICE": "cpu"},
    )
    try:
        wait_for_health(f"127.0.0.1:{ports['orchestrator']}", ORCHESTRATOR, timeout=240, process=process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, process.output()[-3000:]
    finally:
        stop_process(process)
    assert _files_under(tmpdir) == []
    onnxruntime_files = [name for name in _files_under(home) if "onnxruntime" in name.lower()]
    assert onnxruntime_files == []
