"""RunPod workers drain on SIGTERM and leave no files behind (issue #14, item 9).

Each case starts a real worker process over the fixture models, with its own empty TMPDIR, working
directory and HOME, and sends SIGTERM while a job is in flight. The job's audio comes from a local
HTTP server that holds the download until the signal has been sent, so the job is provably in
flight. The worker must finish that job, take no new one, exit 0, and leave TMPDIR and the working
directory as empty as it found them, and no onnxruntime telemetry under HOME: before, it died of
the signal (status 143) and left torch's `tmp*/_remote_module_non_scriptable.py`, an inductor
cache directory and onnxruntime's `.ses` file in TMPDIR, and onnxruntime's telemetry database
and device id under HOME.

Both of the runpod SDK's modes are covered: its local test API (`--rp_serve_api`, uvicorn), and the
job loop it runs on RunPod, here against a stand-in for RunPod's job API that would hand out a
second job to anyone who asked.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.diarization.helpers import synthesize
from tests.support.servers import VENV_BIN, free_port

WAV = synthesize()
STARTUP_S = 240.0
# onnxruntime sends no telemetry when CI is set, so CI would hide what these tests look for.
CLEARED = ("TMPDIR", "HOME", "CI")
JOB_S = 240.0


@dataclass
class FakeRunPod:
    """The audio the jobs point at (held until `release`) and RunPod's job API for the job loop."""

    release: threading.Event = field(default_factory=threading.Event)
    audio_requested: threading.Event = field(default_factory=threading.Event)
    taken: list[str] = field(default_factory=list)
    done: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    base: str = ""

    def job(self, number: int) -> dict[str, Any]:
        return {"id": f"job-{number}", "input": {"audio": f"{self.base}/call.wav", "audio_format": "wav"}}


def serve_fake(fake: FakeRunPod) -> http.server.ThreadingHTTPServer:
    class Routes(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/call.wav"):
                fake.audio_requested.set()
                fake.release.wait(JOB_S)
                self.reply(200, WAV, "audio/wav")
            elif self.path.startswith("/job-take/"):
                fake.taken.append(self.path)
                self.reply(200, json.dumps(fake.job(len(fake.taken))).encode())
            elif self.path.startswith("/job-stop/"):
                time.sleep(0.2)
                self.reply(204)
            else:
                self.reply(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.done.append((self.path, json.loads(body)))
            self.reply(200, b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fake() -> Iterator[FakeRunPod]:
    runpod = FakeRunPod()
    server = serve_fake(runpod)
    yield runpod
    runpod.release.set()
    server.shutdown()
    server.server_close()


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    dirs: dict[str, Path]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def leftovers(self) -> dict[str, list[str]]:
        return {
            name: sorted(str(path.relative_to(root)) for path in root.rglob("*"))
            for name, root in self.dirs.items()
        }


def start_worker(
    module: str, args: list[str], env: dict[str, str], tmp_path: Path, models: dict[str, str]
) -> Worker:
    dirs = {name: tmp_path / name for name in ("tmpdir", "cwd", "home")}
    for path in dirs.values():
        path.mkdir()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUNPOD_", "ORT_", "TORCHINDUCTOR_")) and key not in CLEARED
    }
    environment.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "TMPDIR": str(dirs["tmpdir"]),
            "HOME": str(dirs["home"]),
            "HF_HUB_OFFLINE": "1",
            "PARAKEET_FETCH_ALLOW": "127.0.0.1",
            "OMP_NUM_THREADS": "1",
            **models,
            **env,
        }
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(VENV_BIN / "python"), "-m", module, *args],
            cwd=dirs["cwd"],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, log, dirs)


def wait_until(condition: Any, worker: Worker, what: str, timeout: float = STARTUP_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited with {worker.process.returncode} {what}:\n{worker.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out {what}:\n{worker.output()}")
        time.sleep(0.2)


def terminate_mid_job(worker: Worker, fake: FakeRunPod, answered: Any = lambda: False) -> None:
    """SIGTERM once the job is downloading its audio; the audio comes only after the signal."""
    wait_until(
        lambda: fake.audio_requested.is_set() or answered(), worker, "before the job fetched its audio"
    )
    assert fake.audio_requested.is_set(), f"the job was answered without its audio:\n{worker.output()}"
    # The job is in flight: torch's import-time file exists now, so its absence later means something.
    assert list(worker.dirs["tmpdir"].rglob("_remote_module_non_scriptable.py")), worker.leftovers()
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert worker.process.poll() is None, "the worker must not exit with a job in flight"
    fake.release.set()


def assert_clean_exit(worker: Worker) -> None:
    try:
        code = worker.process.wait(timeout=JOB_S)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait(timeout=10)
        raise AssertionError(f"the worker did not exit after draining:\n{worker.output()}") from None
    assert code == 0, worker.output()
    left = worker.leftovers()
    assert (left["tmpdir"], left["cwd"]) == ([], [])
    # HOME keeps the per-user caches libraries build on purpose (matplotlib's font list, ...), but
    # not onnxruntime's telemetry (~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db).
    assert [path for path in left["home"] if "Microsoft" in path or "onnxruntime" in path] == []


def model_env(module: str, tdt_model_path: Path, pyannote_pipeline_path: Path) -> dict[str, str]:
    if module == "parakeet_server.transcription.handler":
        return {"TRANSCRIPTION_MODEL": str(tdt_model_path), "TRANSCRIPTION_DEVICE": "cpu"}
    return {"DIARIZATION_PIPELINE": str(pyannote_pipeline_path), "DIARIZATION_DEVICE": "cpu"}


@pytest.mark.parametrize(
    "module", ["parakeet_server.transcription.handler", "parakeet_server.diarization.handler"]
)
def test_the_local_test_api_worker_finishes_its_job_and_exits_0_on_sigterm(
    module: str, fake: FakeRunPod, tmp_path: Path, tdt_model_path: Path, pyannote_pipeline_path: Path
) -> None:
    port = free_port()
    worker = start_worker(
        module,
        ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)],
        {},
        tmp_path,
        model_env(module, tdt_model_path, pyannote_pipeline_path),
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/docs", timeout=2):
                    return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        wait_until(api_up, worker, "before its API came up")
        replies: list[dict[str, Any]] = []

        def runsync() -> None:
            body = json.dumps({"input": fake.job(1)["input"]}).encode()
            request = urllib.request.Request(f"{base}/runsync", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=JOB_S) as response:
                replies.append(json.loads(response.read()))

        client = threading.Thread(target=runsync)
        client.start()
        terminate_mid_job(worker, fake, answered=lambda: not client.is_alive())
        client.join(JOB_S)
        assert_clean_exit(worker)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=10)
    assert len(replies) == 1 and replies[0]["status"] == "COMPLETED", replies
    assert replies[0]["output"]["duration"] == 12.0 and replies[0]["output"]["warnings"] == []


@pytest.mark.parametrize(
    "module", ["parakeet_server.diarization.handler", "parakeet_server.transcription.handler"]
)
def test_the_runpod_job_loop_finishes_its_job_takes_no_other_and_exits_0_on_sigterm(
    module: str, fake: FakeRunPod, tmp_path: Path, tdt_model_path: Path, pyannote_pipeline_path: Path
) -> None:
    runpod_env = {
        # Where the SDK takes jobs from and posts results to on RunPod; here, the stand-in.
        "RUNPOD_WEBHOOK_GET_JOB": f"{fake.base}/job-take/$ID?gpu=none",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{fake.base}/job-done/$RUNPOD_POD_ID?gpu=none",
        "RUNPOD_POD_ID": "drain-test",
        # Its start-up fitness checks want a route to 8.8.8.8 (and a GPU when nvidia-smi answers).
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_SKIP_GPU_CHECK": "true",
    }
    worker = start_worker(
        module, [], runpod_env, tmp_path, model_env(module, tdt_model_path, pyannote_pipeline_path)
    )
    try:
        terminate_mid_job(worker, fake, answered=lambda: bool(fake.done))
        assert_clean_exit(worker)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=10)
    assert fake.taken == ["/job-take/drain-test?gpu=none&job_in_progress=0"]  # job-2 was there for the taking
    assert [path for path, _result in fake.done] == ["/job-done/drain-test?gpu=none&isStream=false"]
    result = fake.done[0][1]
    assert "error" not in result, result
    assert result["output"]["duration"] == 12.0 and result["output"]["warnings"] == []


def run_python(
    code: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with its own empty TMPDIR, working directory and HOME."""
    for name in ("tmpdir", "cwd", "home"):
        (tmp_path / name).mkdir(exist_ok=True)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("ORT_") and key not in CLEARED
    }
    environment.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "TMPDIR": str(tmp_path / "tmpdir"),
            "HOME": str(tmp_path / "home"),
            **(env or {}),
        }
    )
    return subprocess.run(
        [str(VENV_BIN / "python"), "-c", code],
        cwd=tmp_path / "cwd",
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def everything_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_onnxruntime_writes_nothing_once_the_process_is_prepared(tmp_path: Path) -> None:
    code = (
        "from parakeet_server.core.runtime_hygiene import prepare_process\n"
        "scratch = prepare_process()\n"
        "import os, onnxruntime\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'], os.listdir(scratch))\n"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1 []\n"
    assert [everything_under(tmp_path / name) for name in ("tmpdir", "cwd", "home")] == [[], [], []]


def test_without_it_onnxruntime_leaves_its_session_file_and_telemetry_database(tmp_path: Path) -> None:
    """What prepare_process prevents (if this ever passes empty, the setting is no longer needed)."""
    done = run_python("import onnxruntime\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert everything_under(tmp_path / "tmpdir") == [".ses"]
    assert "onnxruntime.db" in " ".join(everything_under(tmp_path / "home"))


def test_a_prepared_process_keeps_its_temp_files_in_one_directory_it_removes_at_exit(tmp_path: Path) -> None:
    code = (
        "import os, tempfile\n"
        "from parakeet_server.core.runtime_hygiene import prepare_process\n"
        "scratch = prepare_process()\n"
        "assert prepare_process() == scratch  # once per process\n"
        "assert tempfile.gettempdir() == os.environ['TMPDIR'] == scratch\n"
        "tempfile.mkdtemp()  # what torch does at import, never removed by anyone\n"
        "open(os.path.join(scratch, 'left-by-a-library'), 'w').close()\n"
        "print(os.path.relpath(scratch, os.path.dirname(scratch)).startswith('parakeet-'), len(os.listdir(scratch)))\n"
    )
    done = run_python(code, tmp_path)
    assert (done.returncode, done.stdout) == (0, "True 2\n"), done.stderr
    assert everything_under(tmp_path / "tmpdir") == []


def test_sigterm_before_a_server_takes_over_exits_0_through_cleanup(tmp_path: Path) -> None:
    """A worker told to stop while its model still loads leaves nothing behind either."""
    code = (
        "import os, signal, tempfile, time\n"
        "from parakeet_server.core.runtime_hygiene import prepare_process\n"
        "prepare_process()\n"
        "tempfile.mkdtemp()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
        "print('not reached')\n"
    )
    done = run_python(code, tmp_path)
    assert (done.returncode, done.stdout) == (0, "")
    assert everything_under(tmp_path / "tmpdir") == []


def test_an_operator_who_wants_onnxruntime_telemetry_keeps_it(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "from parakeet_server.core.runtime_hygiene import prepare_process\n"
        "prepare_process()\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'])\n"
    )
    done = run_python(code, tmp_path, {"ORT_DISABLE_TELEMETRY": "0"})
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
