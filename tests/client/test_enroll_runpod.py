"""Enroll over RunPod JSON (#19): `{"task": "enroll", ...}` on the diarization worker, through the
runpod SDK's local test API with the offline backend (real models): `parakeet enroll --runpod-url`
writes the very file the job answered, that voiceprint names its speaker in a Diarize job's
known_speakers (as does reference audio), and bad enroll jobs come back with their reasons.
The job JSON and the task selection are also checked without a worker."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from eval import synth
from eval.voiceprints import enrolment_audio
from parakeet import cli
from parakeet.client import enroll_request, read_voiceprint, write_voiceprint
from parakeet.errors import ParakeetError, Unavailable
from parakeet.runpod import RunPodEndpoint, RunPodJobs, enrolled_from_json, enrolled_to_json
from parakeet.v1 import audio_pb2, diarization_pb2, transcription_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.runpod_shim import Tasks, run_job, run_task_job
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.diarization.handler import prepare_tasks
from tests.diarization.test_offline_engine import wav_bytes
from tests.support.servers import (
    VENV_BIN,
    free_port,
    post_json,
    start_process,
    stop_process,
    wait_for_worker,
)

SEED = 5151


def _enrolled() -> diarization_pb2.EnrollResponse:
    voiceprint = audio_pb2.Voiceprint(
        embedding=[0.6, 0.8], model="resemblyzer", model_version="v1", speech_seconds=12.5
    )
    return diarization_pb2.EnrollResponse(voiceprint=voiceprint, name="Alice", duration=13.0, model="m")


# -- without a worker -----------------------------------------------------------------------------


def test_the_enroll_output_is_the_voiceprint_file_and_reads_back(tmp_path: Path) -> None:
    enrolled = _enrolled()
    written = write_voiceprint(tmp_path / "a.voiceprint.json", enrolled)
    assert enrolled_to_json(enrolled) == json.loads(written.read_text())
    back = enrolled_from_json(enrolled_to_json(enrolled))
    assert back.name == "Alice" and back.voiceprint == enrolled.voiceprint
    with pytest.raises(ValueError, match="holds no voiceprint"):
        enrolled_from_json({"name": "Alice"})


class _Scripted(http.server.BaseHTTPRequestHandler):
    """/runsync answering `reply`, recording the job it got."""

    reply: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        self.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        data = json.dumps(self.reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def scripted() -> Iterator[tuple[type[_Scripted], RunPodEndpoint]]:
    handler = type("Handler", (_Scripted,), {"reply": {}, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, RunPodEndpoint("e", f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def test_runpodjobs_enroll_sends_the_enroll_job_and_reads_the_voiceprint(scripted) -> None:
    handler, endpoint = scripted
    handler.reply = {"id": "j", "status": "COMPLETED", "output": enrolled_to_json(_enrolled())}
    request = enroll_request(b"RIFF", name="Alice")
    request.audio.format = "wav"
    answer = RunPodJobs("k").enroll(endpoint, request, timeout=10)
    assert handler.seen == [
        {"input": {"task": "enroll", "audio": "UklGRg==", "audio_format": "wav", "name": "Alice"}}
    ]
    assert answer.name == "Alice" and list(answer.voiceprint.embedding) == pytest.approx([0.6, 0.8])
    # A worker from before enroll jobs answers a Diarize response: named, not misread.
    handler.reply = {"id": "j", "status": "COMPLETED", "output": {"segments": [], "num_speakers": 0}}
    with pytest.raises(Unavailable, match="does it run enroll jobs"):
        RunPodJobs("k").enroll(endpoint, request, timeout=10)


def _never(request: transcription_pb2.TranscribeRequest, context: CallContext) -> Any:
    raise AssertionError("the job must be refused before the servicer runs")


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "enroll",
            "the transcription endpoint does not run the 'enroll' task: send it to the diarization "
            "endpoint, the single endpoint or the orchestrator",
        ),
        (
            "summarise",
            "'task' 'summarise' is not a task of the transcription endpoint: it runs its own request "
            "when 'task' is left out",
        ),
        (3, "'task' 3 is not a task of the transcription endpoint"),
    ],
)
def test_a_task_the_worker_does_not_run_is_invalid_field(task: object, message: str) -> None:
    job = {"input": {"task": task, "audio": "UklGRg=="}}
    output = run_job(job, transcription_pb2.TranscribeRequest, _never)
    assert output["reason"] == "INVALID_FIELD" and output["error_code"] == "INVALID_ARGUMENT"
    assert output["error"].startswith(message)
    assert output["error"] == message or task != "enroll"  # the enroll message is whole


# -- the diarization worker through the SDK's local test API --------------------------------------


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The diarization RunPod worker on the offline backend, serving the local test API."""
    port = free_port()
    log = tmp_path_factory.mktemp("enroll-runpod") / "worker.log"
    command = [str(VENV_BIN / "python"), "-m", "parakeet_server.diarization.handler", "--rp_serve_api"]
    command += ["--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    env = {"DIARIZATION_PIPELINE": "offline", "DIARIZATION_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    process = start_process(command, log, env)
    try:
        yield wait_for_worker(port, process, timeout=300)
    finally:
        stop_process(process, grace=20.0)


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(SEED, 2, 6, overlap_probability=0.0)


def _b64(samples: np.ndarray) -> str:
    return base64.b64encode(wav_bytes(samples)).decode()


def _runsync(worker: str, job: dict[str, Any]) -> dict[str, Any]:
    reply = post_json(f"{worker}/runsync", {"input": job}, timeout=300)
    assert reply["status"] == "COMPLETED", reply
    output: dict[str, Any] = reply["output"]
    return output


@pytest.mark.slow
@pytest.mark.espeak
def test_enroll_on_runpod_end_to_end(
    worker: str, talk: synth.Conversation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = tmp_path / "alice.wav"
    synth.write_wav(alice, enrolment_audio(talk.voices["spk0"], SEED).samples)
    out = tmp_path / "alice.voiceprint.json"
    code = cli.main(["enroll", str(alice), "--name", "Alice", "-o", str(out), "--runpod-url", worker, "-q"])
    assert code == 0, capsys.readouterr().err
    assert f"{out}: Alice, " in capsys.readouterr().err
    speaker = read_voiceprint(out)
    assert speaker.voiceprint.model == "campplus+resemblyzer" and len(speaker.voiceprint.embedding) == 448
    assert abs(float(np.linalg.norm(speaker.voiceprint.embedding)) - 1.0) < 1e-4

    # The job's output is the very file the CLI wrote.
    job = {"task": "enroll", "audio": base64.b64encode(alice.read_bytes()).decode(), "name": "Alice"}
    assert _runsync(worker, job) == json.loads(out.read_text())

    # Known speakers in a Diarize job: the voiceprint file as it is, and reference audio.
    carol_audio = _b64(enrolment_audio(talk.voices["spk1"], SEED).samples)
    known = [json.loads(out.read_text()), {"name": "Carol", "reference": {"content": carol_audio}}]
    diarized = _runsync(worker, {"audio": _b64(talk.audio), "num_speakers": 2, "known_speakers": known})
    identities = {identity["speaker"]: identity for identity in diarized["speaker_identities"]}
    assert set(identities) == {"Alice", "Carol"} == {turn["speaker"] for turn in diarized["segments"]}
    assert identities["Alice"]["name"] == "Alice" and identities["Alice"]["similarity"] >= 0.9
    for turn in talk.turns:  # each reference turn's middle lies in a found turn of its speaker's name
        middle = (turn.start + turn.end) / 2
        found = {t["speaker"] for t in diarized["segments"] if t["start"] <= middle < t["end"]}
        assert found == {"Alice" if turn.speaker == "spk0" else "Carol"}, turn


@pytest.mark.slow
@pytest.mark.espeak
def test_bad_enroll_jobs_come_back_with_their_reasons(worker: str) -> None:
    short = np.concatenate([np.zeros(16000, np.float32), synth.synthesize("hello", synth.VOICES[1])])
    jobs = RunPodJobs("", poll_interval_s=0.2)
    endpoint = RunPodEndpoint("", url=worker)
    # The SDK's test API drops a FAILED job's output (its error_code and reason) and keeps the
    # message (test_cli.py says the same): the message is checked here, the code in process.
    with pytest.raises(ParakeetError, match=r"holds 0\.\d s of speech; a voiceprint needs at least 2 s"):
        jobs.enroll(endpoint, enroll_request(wav_bytes(short), name="X"), timeout=120)
    offline: Tasks = prepare_tasks(DiarizationConfig(pipeline="offline", device="cpu"))
    output = run_task_job({"input": {"task": "enroll", "audio": _b64(short)}}, offline)
    assert (output["error_code"], output["reason"]) == ("INVALID_ARGUMENT", "AUDIO_TOO_SHORT")

    extra = {"task": "enroll", "audio": _b64(short), "num_speakers": 2}
    refused = post_json(f"{worker}/runsync", {"input": extra})
    assert refused["status"] == "FAILED"
    accepts = 'the enroll task has no field named "num_speakers"; it accepts: audio, audio_format, name'
    assert accepts in str(refused)
    other = post_json(f"{worker}/runsync", {"input": {"task": "transcribe", "audio": _b64(short)}})
    assert other["status"] == "FAILED"
    runs = (
        "'task' 'transcribe' is not a task of the diarization endpoint: it runs 'enroll', or its own request"
    )
    assert runs in str(other)
