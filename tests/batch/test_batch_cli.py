"""`parakeet batch` end to end on the synthesized archive (tests/support/batch_corpus.py) with the real
tiny TDT and the offline diarizer: embedded and --server write identical outputs; the corrupt files
are failed rows with their reasons; a run killed with SIGKILL halfway and run again ends with one
row per input and no input transcribed twice once logged; --dry-run lists; manifest options reach
the requests; URLs go through the server's guarded fetcher; no progress bar off a terminal."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from parakeet import cli
from parakeet_server.core.grpc_server import ServerOptions, ServiceHost
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.orchestrator.wiring import embedded_backends
from tests.batch.conftest import TINY_TDT
from tests.batch.parakeet_cli import register_embedded_batch_entry
from tests.support.servers import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.espeak]
FORMATS = "json,srt,vtt,text,rttm"
MODEL_ARGS = ("--model", str(TINY_TDT), "--pipeline", "offline")


class CountingServicer(OrchestratorServicer):
    """The orchestrator, recording every Orchestrate request it is asked (by audio digest or URL)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.requests = []
        self.lock = threading.Lock()

    def Orchestrate(self, request, context):
        with self.lock:
            self.requests.append(request)
        return super().Orchestrate(request, context)

    def calls(self) -> Counter:
        with self.lock:
            return Counter(
                request.audio.uri or hashlib.sha256(request.audio.content).hexdigest()
                for request in self.requests
            )


@pytest.fixture(scope="module")
def server():
    """An OrchestratorService over the engines the embedded mode builds, on loopback."""
    backends = embedded_backends(str(TINY_TDT), "offline", diarization=True)
    backends.warm_up()
    servicer = CountingServicer(backends, max_concurrent_calls=8)
    host = ServiceHost(
        [orchestrator_server.hosted_service(servicer)], ServerOptions(host="127.0.0.1", port=0, grace_s=1.0)
    )
    host.start()
    assert host.wait_until_warm(60)
    yield host.address, servicer
    host.drain(0.5)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def batch(*args: object, monkeypatch=None) -> int:
    register_embedded_batch_entry()
    return cli.main(["batch", *map(str, args)])


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def files(out: Path) -> dict[str, bytes]:
    return {
        path.relative_to(out).as_posix(): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "results.jsonl"
    }


def test_embedded_and_server_write_identical_outputs_and_fail_the_corrupt_files(
    batch_corpus, server, tmp_path, capsys
) -> None:
    address, _servicer = server
    embedded, remote = tmp_path / "embedded", tmp_path / "server"
    common = (batch_corpus.root, "--diarize", "--format", FORMATS)
    assert batch(*common, "--out", embedded, *MODEL_ARGS) == 1
    assert batch(*common, "--out", remote, "--server", address, "--concurrency", "1") == 1
    err = capsys.readouterr().err
    assert "parakeet batch: 97 done, 3 failed, 0 skipped" in err
    assert "failed: " + str(batch_corpus.root / "broken/empty.wav") + ": AUDIO_MISSING: audio is empty" in err

    # Byte-identical. The server is sent one file at a time as the embedded run does: files in
    # flight together are batched through the model, and padding moves word times and confidences.
    written = files(embedded)
    assert written == files(remote)
    good_keys = sorted(name.removesuffix(".wav") for name in batch_corpus.texts)
    assert sorted(written) == sorted(
        f"{key}.{suffix}" for key in good_keys for suffix in ("json", "srt", "vtt", "txt", "rttm")
    )
    for out in (embedded, remote):
        logged = {row["key"]: row for row in rows(out)}
        assert len(rows(out)) == len(logged) == 100
        failed = {key: row["reason"] for key, row in logged.items() if row["status"] == "failed"}
        assert failed == {name.removesuffix(".wav"): reason for name, reason in batch_corpus.corrupt.items()}
        assert all(logged[key]["error"] for key in failed)
        done = [row for row in logged.values() if row["status"] == "done"]
        assert all(row["duration_s"] > 0.3 and len(row["outputs"]) == 5 for row in done)
    # The transcripts are the words spoken (the tiny model knows this vocabulary).
    heard = sum(
        json.loads(written[f"{name.removesuffix('.wav')}.json"])["text"] == text
        for name, text in batch_corpus.texts.items()
    )
    assert heard >= 80, heard


def test_a_run_killed_halfway_and_rerun_logs_every_input_once_without_transcribing_it_again(
    batch_corpus, server, tmp_path
) -> None:
    address, servicer = server
    out = tmp_path / "out"
    before = servicer.calls()
    command = [
        sys.executable,
        "-m",
        "tests.batch.parakeet_cli",
        "batch",
        str(batch_corpus.root),
        "--out",
        str(out),
    ]
    command += ["--format", "json,srt", "--server", address, "--concurrency", "2"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    log = out / "results.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 50:
            break
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    logged_before = {row["source"] for row in rows(out)}
    assert 50 <= len(logged_before) < 100

    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1, finished.stderr
    # Off a terminal there is no progress bar: only the summary lines.
    assert finished.stderr.splitlines()[0].startswith("parakeet batch: ")
    assert "it/s" not in finished.stderr and "file/s" not in finished.stderr and "\r" not in finished.stderr
    assert "skipped (done before, 3 of them failed)" in finished.stderr

    logged = rows(out)
    assert len(logged) == len({row["key"] for row in logged}) == 100
    calls = servicer.calls() - before
    by_source = {str(path): digest(path) for path in batch_corpus.paths()}
    for source in logged_before:
        assert calls[by_source[source]] == 1, source  # logged before the kill: never sent again
    assert sum(calls.values()) <= 100 + 2  # at most the two in flight at the kill went twice
    for row in logged:
        if row["status"] == "done":
            assert all((out / name).stat().st_size > 0 for name in row["outputs"])
    assert not [path for path in out.rglob("*") if ".parakeet-tmp-" in path.name]

    # A third run has nothing to do.
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "0 done, 0 failed, 100 skipped (done before, 3 of them failed)" in again.stderr
    assert again.returncode == 1
    assert servicer.calls() - before == calls


def test_dry_run_lists_each_input_with_its_state_and_transcribes_nothing(
    batch_corpus, server, tmp_path, capsys
) -> None:
    address, servicer = server
    out = tmp_path / "out"
    names = batch_corpus.subset(2)
    inputs = [batch_corpus.root / name for name in names]
    assert batch(*inputs[:2], "--out", out, "--server", address, "-q") == 1  # broken/empty, broken/not_audio
    capsys.readouterr()
    count = len(servicer.requests)
    assert batch(*inputs, "--out", out, "--server", address, "--dry-run") == 0
    captured = capsys.readouterr()
    assert (
        captured.out.splitlines()
        == [
            f"failed\tempty\t{inputs[0]}",
            f"failed\tnot_audio\t{inputs[1]}",
            f"todo\ttruncated\t{inputs[2]}",
            f"todo\tclip_002\t{inputs[3]}",
            f"todo\tclip_004\t{inputs[4]}",
        ]
        or captured.out
    )
    assert "5 inputs: 3 to transcribe, 0 done, 2 failed before (dry run: nothing transcribed)" in captured.err
    assert len(servicer.requests) == count


def test_manifest_options_reach_each_request(batch_corpus, server, tmp_path) -> None:
    address, servicer = server
    first, second = sorted(batch_corpus.texts)[:2]
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        json.dumps({"path": str(batch_corpus.root / first), "num_speakers": 2, "language": "en"})
        + "\n"
        + json.dumps({"path": str(batch_corpus.root / second), "diarize": False})
        + "\n"
    )
    count = len(servicer.requests)
    assert (
        batch(
            manifest, "--out", tmp_path / "out", "--server", address, "--diarize", "--max-speakers", "3", "-q"
        )
        == 0
    )
    sent = {hashlib.sha256(r.audio.content).hexdigest(): r for r in servicer.requests[count:]}
    one, two = sent[digest(batch_corpus.root / first)], sent[digest(batch_corpus.root / second)]
    assert (one.diarize, one.num_speakers, one.max_speakers, one.language) == (True, 2, 3, "en")
    assert (two.diarize, two.HasField("num_speakers"), two.max_speakers) == (False, False, 3)
    assert json.loads((tmp_path / "out" / f"{Path(second).stem}.json").read_text())["num_speakers"] == 0


@pytest.fixture
def http_corpus(batch_corpus):
    """The corpus over HTTP on 127.0.0.1."""
    handler = type(
        "Files",
        (http.server.SimpleHTTPRequestHandler,),
        {
            "log_message": lambda *_: None,
            "__init__": lambda self, *a, **k: http.server.SimpleHTTPRequestHandler.__init__(
                self, *a, directory=str(batch_corpus.root), **k
            ),
        },
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_urls_are_fetched_by_the_server_through_its_guarded_fetcher(
    batch_corpus, server, http_corpus, tmp_path, monkeypatch
) -> None:
    address, servicer = server
    name = sorted(batch_corpus.texts)[0]
    url = f"{http_corpus}/{name}"
    monkeypatch.delenv("PARAKEET_FETCH_ALLOW", raising=False)
    assert batch(url, "--out", tmp_path / "refused", "--server", address, "-q") == 1
    (row,) = rows(tmp_path / "refused")
    assert (row["status"], row["reason"], row["source"]) == ("failed", "URL_FORBIDDEN", url)
    assert "PARAKEET_FETCH_ALLOW" in row["error"]

    monkeypatch.setenv("PARAKEET_FETCH_ALLOW", "127.0.0.1")
    assert batch(url, "--out", tmp_path / "fetched", "--server", address, "-q") == 0
    assert servicer.requests[-1].audio.uri == url
    assert batch(batch_corpus.root / name, "--out", tmp_path / "local", "--server", address, "-q") == 0
    stem = Path(name).stem
    assert (tmp_path / "fetched" / f"{stem}.json").read_bytes() == (
        tmp_path / "local" / f"{stem}.json"
    ).read_bytes()
