"""The single-endpoint RunPod worker in streaming mode (RUNPOD_STREAM=1), through the runpod SDK's
local test API, with the trained tiny TDT and the offline diarization backend on a synthesized
two-speaker conversation: /stream gives the finals with their words and speakers in several
partials and the whole response last; /runsync's aggregated output reads with parakeet.runpod;
errors keep their reasons; a worker started without RUNPOD_STREAM answers as it always did.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval import synth
from eval.metrics import SpeakerWord, WordErrors, speaker_word_errors
from parakeet import orchestrate_request
from parakeet.errors import InvalidArgument
from parakeet.runpod import RunPodEndpoint, RunPodJobs, response_to_json
from parakeet.v1 import orchestrator_pb2, streaming_pb2
from parakeet_server.core.runpod_shim import run_job
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.handler import prepare
from tests.support.servers import (
    REPO_ROOT,
    VENV_BIN,
    Spawned,
    free_port,
    post_json,
    start_process,
    stop_process,
    wait_for_worker,
)

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
RATE = 16_000
ENGINES = {
    "ORCHESTRATOR_BACKEND": "inprocess",
    "TRANSCRIPTION_MODEL": str(MODEL),
    "TRANSCRIPTION_DEVICE": "cpu",
    "DIARIZATION_PIPELINE": "offline",
    "DIARIZATION_DEVICE": "cpu",
}


def _worker(port: int, log: Path, env: dict[str, str]) -> Spawned:
    command = [
        str(VENV_BIN / "python"),
        "-m",
        "parakeet_server.orchestrator.handler",
        "--rp_serve_api",
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_port",
        str(port),
    ]
    return start_process(command, log, env)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A streaming worker and one started the way every worker was before (no RUNPOD_STREAM)."""
    logs = tmp_path_factory.mktemp("runpod-stream")
    ports = {"stream": free_port(), "plain": free_port()}
    processes = {
        "stream": _worker(ports["stream"], logs / "stream.log", {**ENGINES, "RUNPOD_STREAM": "1"}),
        "plain": _worker(ports["plain"], logs / "plain.log", {**ENGINES, "RUNPOD_STREAM": ""}),
    }
    try:
        yield {name: wait_for_worker(port, processes[name], timeout=300) for name, port in ports.items()}
    finally:
        for process in processes.values():
            stop_process(process)


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(seed=1207, num_speakers=2, num_turns=6, overlap_probability=0.0)


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes((np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def job(talk: synth.Conversation) -> dict[str, Any]:
    return {
        "audio": base64.b64encode(_wav(talk.audio)).decode(),
        "diarize": True,
        "word_timestamps": True,
        "response_format": "srt",
    }


def _poll(url: str) -> dict[str, Any]:
    """/stream/{id} as the SDK's local test API serves it (POST; RunPod's own API takes GET)."""
    return post_json(url, {}, timeout=300)


def _scores(talk: synth.Conversation, words: list[tuple[str, str]]) -> tuple[float, float]:
    errors = WordErrors()
    errors.add(talk.transcript(), " ".join(word for word, _ in words))
    reference = [SpeakerWord(w, s) for w, s in talk.words()]
    wder = speaker_word_errors(reference, [SpeakerWord(w, s) for w, s in words]).wder
    return errors.wer, wder


@pytest.fixture(scope="module")
def streamed(workers: dict[str, str], job: dict[str, Any]) -> list[dict[str, Any]]:
    """/run, then /stream/{id}: the partials of the streaming worker, as the API lists them."""
    started = post_json(f"{workers['stream']}/run", {"input": job})
    assert started["status"] == "IN_PROGRESS", started
    reply = _poll(f"{workers['stream']}/stream/{started['id']}")
    assert reply["status"] == "COMPLETED", reply
    return [item["output"] for item in reply["stream"]]


def test_stream_gives_the_finals_with_words_and_speakers_then_the_whole_response(
    streamed: list[dict[str, Any]], talk: synth.Conversation
) -> None:
    kinds = [partial["type"] for partial in streamed]
    assert kinds[-1] == "response" and set(kinds[:-1]) == {"final"}
    finals = streamed[:-1]
    assert len(finals) >= 3, "a recording of several turns comes in several partials"
    assert {"text", "start", "end", "speaker", "words", "utterance_index"} <= set(finals[0])
    words = [(w["word"], w["speaker"]) for final in finals for w in final["words"]]
    wer, wder = _scores(talk, words)
    assert wer <= 0.10, f"WER {wer:.3f}"
    assert wder <= 0.10, f"WDER {wder:.3f}"
    assert all(w["speaker"] == final["speaker"] for final in finals for w in final["words"])
    assert {final["speaker"] for final in finals} == {"SPEAKER_00", "SPEAKER_01"}
    starts = [final["start"] for final in finals]
    assert starts == sorted(starts)
    assert [final["utterance_index"] for final in finals] == list(range(len(finals)))
    # The last partial is today's response JSON, made of the same finals.
    whole = streamed[-1]
    assert set(whole) - {"type"} == set(response_to_json(orchestrator_pb2.OrchestrateResponse()))
    assert [(w["word"], w["speaker"]) for w in whole["words"]] == words
    assert whole["num_speakers"] == 2 and whole["response_format"] == "srt"
    assert whole["duration"] == pytest.approx(talk.duration, abs=0.01)
    assert whole["document"].startswith("1\n00:00:") and "SPEAKER_0" in whole["document"]
    assert [s["text"] for s in whole["segments"]] == [final["text"] for final in finals]
    assert whole["text"] == " ".join(final["text"] for final in finals)
    assert "offline" in whole["model"] and whole["language"] == "en"


def test_the_client_streams_finals_then_the_response(
    workers: dict[str, str], talk: synth.Conversation, streamed: list[dict[str, Any]]
) -> None:
    request = orchestrate_request(_wav(talk.audio), diarize=True, word_timestamps=True)
    jobs = RunPodJobs("key", poll_interval_s=0.05)
    endpoint = RunPodEndpoint("local", workers["stream"])
    received = list(jobs.stream(endpoint, request, orchestrator_pb2.OrchestrateResponse, timeout=300))
    *finals, whole = received
    assert all(isinstance(final, streaming_pb2.FinalResult) for final in finals)
    assert isinstance(whole, orchestrator_pb2.OrchestrateResponse)
    words = [(w.word, w.speaker) for final in finals for w in final.words]
    assert words == [(w["word"], w["speaker"]) for partial in streamed[:-1] for w in partial["words"]]
    assert [(w.word, w.speaker) for w in whole.words] == words
    assert whole.num_speakers == 2 and whole.document == ""  # json: no document


def test_runsync_on_a_streaming_worker_still_answers_what_the_client_reads(
    workers: dict[str, str], job: dict[str, Any], streamed: list[dict[str, Any]]
) -> None:
    reply = post_json(f"{workers['stream']}/runsync", {"input": job}, timeout=300)
    assert reply["status"] == "COMPLETED"
    assert isinstance(reply["output"], list) and reply["output"][-1]["type"] == "response"
    assert reply["output"] == streamed  # the same partials, aggregated
    jobs = RunPodJobs("key", poll_interval_s=0.05)
    endpoint = RunPodEndpoint("local", workers["stream"])
    request = orchestrate_request(base64.b64decode(job["audio"]), diarize=True, response_format="srt")
    response = jobs.call(endpoint, request, orchestrator_pb2.OrchestrateResponse, timeout=300)
    assert response.num_speakers == 2
    assert response.document == streamed[-1]["document"]
    assert response.text == streamed[-1]["text"]


@pytest.mark.parametrize(
    ("audio", "reason", "words"),
    [
        ("UklG!!!RiQ=", "INVALID_FIELD", "base64"),
        (
            base64.b64encode(b"\x01\x02not audio at all" * 40).decode(),
            "AUDIO_UNDECODABLE",
            "could not decode",
        ),
    ],
)
def test_a_bad_job_ends_its_stream_with_the_reason(
    workers: dict[str, str], audio: str, reason: str, words: str
) -> None:
    started = post_json(f"{workers['stream']}/run", {"input": {"audio": audio, "diarize": True}})
    reply = _poll(f"{workers['stream']}/stream/{started['id']}")
    assert [item["output"]["type"] for item in reply["stream"]] == ["error"]
    error = reply["stream"][0]["output"]
    assert error["error_code"] == "INVALID_ARGUMENT" and error["reason"] == reason
    assert words in error["error"]
    # The client raises it with the same reason, from /stream and from /runsync.
    jobs = RunPodJobs("key", poll_interval_s=0.05)
    endpoint = RunPodEndpoint("local", workers["stream"])
    request = orchestrator_pb2.OrchestrateRequest(diarize=True)
    request.audio.content = b"\x01\x02not audio at all" * 40
    for attempt in (
        lambda: list(jobs.stream(endpoint, request, orchestrator_pb2.OrchestrateResponse, timeout=60)),
        lambda: jobs.call(endpoint, request, orchestrator_pb2.OrchestrateResponse, timeout=60),
    ):
        with pytest.raises(InvalidArgument) as raised:
            attempt()
        assert raised.value.reason == "AUDIO_UNDECODABLE"


def test_a_worker_not_in_streaming_mode_answers_as_before(
    workers: dict[str, str], job: dict[str, Any]
) -> None:
    reply = post_json(f"{workers['plain']}/runsync", {"input": job}, timeout=300)
    assert reply["status"] == "COMPLETED"
    output = reply["output"]
    assert isinstance(output, dict) and "type" not in output
    assert set(output) == set(response_to_json(orchestrator_pb2.OrchestrateResponse()))
    # Exactly what the batch path (prepare + run_job, as every worker ran jobs before) answers.
    servicer = prepare(OrchestratorConfig.from_env(ENGINES))
    assert output == run_job({"id": "here", "input": job}, orchestrator_pb2.OrchestrateRequest, servicer)
    assert output["response_format"] == "srt" and output["document"].startswith("1\n")
    assert output["num_speakers"] >= 2 and all(word["speaker"] for word in output["words"])
    # Its handler is the plain one: the SDK's /stream has nothing to stream from it.
    started = post_json(f"{workers['plain']}/run", {"input": job})
    refused = _poll(f"{workers['plain']}/stream/{started['id']}")
    assert refused["status"] == "FAILED" and "handler must be a generator" in refused["error"]


def test_a_streaming_job_names_its_known_speakers_and_refuses_multichannel(
    workers: dict[str, str], job: dict[str, Any], talk: synth.Conversation
) -> None:
    from eval.voiceprints import enrolment_audio
    from parakeet.runpod import request_to_json
    from parakeet.v1 import audio_pb2

    reference = audio_pb2.Audio(content=_wav(enrolment_audio(talk.voices["spk0"], 1207).samples))
    known = orchestrator_pb2.OrchestrateRequest(
        known_speakers=[audio_pb2.KnownSpeaker(name="Alice", reference=reference)]
    )
    fields = {key: value for key, value in request_to_json(known).items() if key.startswith("known")}
    assert fields, request_to_json(known)
    reply = post_json(f"{workers['stream']}/runsync", {"input": {**job, **fields}}, timeout=300)
    assert reply["status"] == "COMPLETED", reply
    whole = reply["output"][-1]
    assert whole["type"] == "response"
    identities = whole["speaker_identities"]
    assert [identity["name"] for identity in identities if identity.get("name")] == ["Alice"], identities
    assert any(word["speaker"] == "Alice" for word in whole["words"])
    refused = post_json(f"{workers['stream']}/runsync", {"input": {**job, "multichannel": True}}, timeout=120)
    error = refused["output"][-1] if isinstance(refused.get("output"), list) else refused
    assert "multichannel is not streamed" in str(error), refused


def test_the_single_endpoint_runs_enroll_jobs_whose_voiceprints_name_speakers_in_its_jobs(
    workers: dict[str, str], job: dict[str, Any], talk: synth.Conversation
) -> None:
    """`{"task": "enroll"}` on the single endpoint (not streaming): the print its own diarizer makes,
    which then names that voice in an Orchestrate job on the same worker."""
    from eval.voiceprints import enrolment_audio

    enrolment = base64.b64encode(_wav(enrolment_audio(talk.voices["spk1"], 1207).samples)).decode()
    reply = post_json(
        f"{workers['plain']}/runsync", {"input": {"task": "enroll", "audio": enrolment, "name": "Bob"}}, 300
    )
    assert reply["status"] == "COMPLETED", reply
    voiceprint = reply["output"]
    assert voiceprint["name"] == "Bob" and voiceprint["voiceprint"]["model"] == "campplus+resemblyzer"
    assert len(voiceprint["voiceprint"]["embedding"]) == 448
    named = post_json(
        f"{workers['plain']}/runsync", {"input": {**job, "known_speakers": [voiceprint]}}, timeout=300
    )
    assert named["status"] == "COMPLETED", named
    output = named["output"]
    assert [identity.get("name") for identity in output["speaker_identities"] if identity.get("name")] == [
        "Bob"
    ]
    bob_words = [word for word in output["words"] if word["speaker"] == "Bob"]
    assert len(bob_words) >= 0.8 * sum(len(t.text.split()) for t in talk.turns if t.speaker == "spk1")
    # A bad enroll job comes back with its reason, as on the diarization endpoint.
    short = base64.b64encode(_wav(np.zeros(RATE // 2, dtype=np.float32))).decode()
    refused = post_json(
        f"{workers['plain']}/runsync", {"input": {"task": "enroll", "audio": short, "name": "X"}}, 60
    )
    assert "speech" in str(refused.get("error") or refused.get("output")), refused
