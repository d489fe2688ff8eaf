"""The load script (tests/reliability/load.py), reduced to 40 concurrent requests, against the real
transcription server of the shared stack: nothing lost or mixed up, VmRSS growth under 10 %."""

from __future__ import annotations

import json

from tests.reliability.conftest import Stack, run_quietly
from tests.reliability.load import MAX_RSS_GROWTH
from tests.support.servers import REPO_ROOT, VENV_BIN

REQUESTS = 40


def test_40_concurrent_requests_are_neither_lost_nor_mixed_up_and_memory_stays_put(stack: Stack) -> None:
    server = stack.transcription
    server.wait_until_serving()
    command = [
        str(VENV_BIN / "python"),
        "-m",
        "tests.reliability.load",
        "--requests",
        str(REQUESTS),
        "--address",
        server.address,
        "--pid",
        str(server.pid),
        "--time-limit",
        "240",
    ]
    finished = run_quietly(command, timeout=300, cwd=str(REPO_ROOT))
    result_lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
    assert result_lines, finished.stdout + finished.stderr
    result = json.loads(result_lines[-1].removeprefix("RESULT "))
    assert (result["requests"], result["lost"], result["mixed_up"]) == (REQUESTS, 0, 0), finished.stdout
    assert result["rss_after_warm_up_kib"] > 0
    assert result["rss_growth"] < MAX_RSS_GROWTH, finished.stdout
    assert result["ok"] is True and finished.returncode == 0, finished.stdout
    assert finished.stdout.startswith("PASS: 40 concurrent Transcribe calls"), finished.stdout
