"""TranscriptionService over real gRPC, the RunPod handler over the SDK's local HTTP API, and the CLI."""

from __future__ import annotations

import base64
import json
import subprocess

import grpc
import pytest
import srt
import webvtt

from parakeet.v1 import audio_pb2, transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.audio import decode_bytes
from parakeet_server.transcription.server import hosted_service
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import VENV_BIN, free_port, post_json, wait_for_health, wait_for_worker
from tests.transcription.conftest import reference_words

SERVICE = "parakeet.v1.TranscriptionService"
WAV = wav_bytes(sweep(4.0, seed=5))


@pytest.fixture
def stub(servicer, start_host):
    host = start_host([hosted_service(servicer)])
    wait_for_health(host.address, SERVICE)
    channel = grpc.insecure_channel(host.address)
    yield transcription_pb2_grpc.TranscriptionServiceStub(channel)
    channel.close()


def transcribe(stub, timeout: float = 30.0, **fields) -> transcription_pb2.TranscribeResponse:
    fields.setdefault("audio", audio_pb2.Audio(content=WAV))
    return stub.Transcribe(transcription_pb2.TranscribeRequest(**fields), timeout=timeout)


def test_grpc_transcript_equals_direct_model_transcribe(stub, reference_model) -> None:
    text, words = reference_words(reference_model, decode_bytes(WAV).samples)
    response = transcribe(stub, word_timestamps=True)
    assert response.text == text
    assert [(w.word, w.start, w.end) for w in response.words] == words
    assert response.duration == 4.0
    assert response.language == "en"
    assert response.model == "parakeet-tdt-tiny-v1.nemo"
    assert response.segments[0].id == 0 and response.segments[0].text == text
    assert response.document == ""


def test_words_only_when_asked_and_segments_unless_switched_off(stub) -> None:
    plain = transcribe(stub)
    assert plain.words == [] and len(plain.segments) == 1
    no_segments = transcribe(stub, timestamps=False)
    assert list(no_segments.segments) == [] and no_segments.text == plain.text
    verbose = transcribe(stub, response_format=audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON)
    assert len(verbose.words) > 5


def test_diarization_segments_attribute_words_and_split_segments(stub) -> None:
    turns = [
        audio_pb2.SpeakerTurn(start=0.0, end=2.0, speaker="SPEAKER_00"),
        audio_pb2.SpeakerTurn(start=2.0, end=4.0, speaker="SPEAKER_01"),
    ]
    response = transcribe(stub, diarization_segments=turns, word_timestamps=True)
    for word in response.words:
        midpoint = (word.start + word.end) / 2
        assert word.speaker == ("SPEAKER_00" if midpoint < 2.0 else "SPEAKER_01")
    assert [s.speaker for s in response.segments] == ["SPEAKER_00", "SPEAKER_01"]
    assert [s.id for s in response.segments] == [0, 1]
    first_of_second = next(w for w in response.words if w.speaker == "SPEAKER_01")
    last_of_first = [w for w in response.words if w.speaker == "SPEAKER_00"][-1]
    assert response.segments[0].end == last_of_first.end
    assert response.segments[1].start == first_of_second.start
    assert response.segments[1].end == response.words[-1].end


def test_srt_and_vtt_documents_parse_and_carry_speakers(stub) -> None:
    turns = [audio_pb2.SpeakerTurn(start=0.0, end=4.0, speaker="SPEAKER_00")]
    subtitles = list(
        srt.parse(
            transcribe(
                stub, response_format=audio_pb2.RESPONSE_FORMAT_SRT, diarization_segments=turns
            ).document
        )
    )
    assert subtitles and all(cue.content.startswith("SPEAKER_00: ") for cue in subtitles)
    assert subtitles[0].start.total_seconds() == 0.0
    vtt = transcribe(stub, response_format=audio_pb2.RESPONSE_FORMAT_VTT, diarization_segments=turns).document
    cues = webvtt.from_string(vtt)
    assert len(cues) == len(subtitles) and all(cue.voice == "SPEAKER_00" for cue in cues)


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"audio": audio_pb2.Audio()}, grpc.StatusCode.INVALID_ARGUMENT, "audio is required"),
        (
            {"audio": audio_pb2.Audio(content=b"not audio at all" * 50)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "could not decode",
        ),
        (
            {"response_format": audio_pb2.RESPONSE_FORMAT_RTTM},
            grpc.StatusCode.INVALID_ARGUMENT,
            "the transcription service has no response_format rttm (it lists speaker turns",
        ),
        ({"language": "de"}, grpc.StatusCode.INVALID_ARGUMENT, "language 'de' is not supported"),
        (
            {"diarization_segments": [audio_pb2.SpeakerTurn(start=2.0, end=1.0, speaker="A")]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "diarization_segments[0]: needs 0 <= start <= end",
        ),
        (
            {"audio": audio_pb2.Audio(uri="http://127.0.0.1:9/a.wav")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "resolves to a non-public address",
        ),
    ],
)
def test_bad_requests_get_actionable_invalid_argument(stub, fields, code, message) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        transcribe(stub, **fields)
    assert raised.value.code() == code
    assert message in raised.value.details()


def test_an_expired_deadline_is_deadline_exceeded(stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        transcribe(stub, audio=audio_pb2.Audio(content=wav_bytes(sweep(30.0))), timeout=0.05)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_runpod_handler_over_the_local_test_api_answers_the_existing_json(
    spawn, tdt_model_path, reference_model
) -> None:
    port = free_port()
    process = spawn(
        "python",
        "-m",
        "parakeet_server.transcription.handler",
        "--rp_serve_api",
        "--rp_api_port",
        str(port),
        "--rp_api_host",
        "127.0.0.1",
        env={"TRANSCRIPTION_MODEL": str(tdt_model_path)},
    )
    base = wait_for_worker(port, process, timeout=120)
    text, words = reference_words(reference_model, decode_bytes(WAV).samples)
    job = {
        "input": {
            "audio": base64.b64encode(WAV).decode(),
            "audio_format": "wav",
            "language": "en",
            "timestamps": True,
            "word_timestamps": True,
            "response_format": "srt",
            "diarization_segments": [{"start": 0.0, "end": 4.0, "speaker": "SPEAKER_00"}],
        }
    }
    reply = post_json(f"{base}/runsync", job)
    assert reply["status"] == "COMPLETED", reply
    output = reply["output"]
    assert output["text"] == text
    assert [(w["word"], w["start"], w["end"]) for w in output["words"]] == words
    assert {w["speaker"] for w in output["words"]} == {"SPEAKER_00"}
    assert output["response_format"] == "srt"
    assert output["duration"] == 4.0
    assert next(iter(srt.parse(output["document"]))).content.startswith("SPEAKER_00: ")

    failed = post_json(f"{base}/runsync", {"input": {"audio": "@@@ not base64"}})
    assert failed["status"] == "FAILED"
    assert "neither" in failed["error"]


def test_parakeet_server_transcription_answers_grpcurl_with_word_timestamps(spawn, tdt_model_path) -> None:
    port = free_port()
    process = spawn(
        "parakeet-server",
        "transcription",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        str(tdt_model_path),
    )
    wait_for_health(f"127.0.0.1:{port}", SERVICE, process=process, timeout=120)
    body = json.dumps({"audio": {"content": base64.b64encode(WAV).decode()}, "word_timestamps": True})
    result = subprocess.run(
        [str(VENV_BIN / "grpcurl"), "-plaintext", "-d", "@", f"127.0.0.1:{port}", f"{SERVICE}/Transcribe"],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert len(reply["words"]) > 5
    assert reply["words"][0].get("start", 0.0) == 0.0  # proto3 JSON omits zero values
    assert all(word["end"] > 0 for word in reply["words"])
    assert reply["duration"] == 4


def test_metrics_count_audio_seconds_and_batch_sizes(stub) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    seconds_before = sample("parakeet_audio_seconds_total", {"service": "transcription"})
    batches_before = sample("parakeet_batch_size_count", {"batcher": "transcription-batcher"})
    transcribe(stub)
    assert sample("parakeet_audio_seconds_total", {"service": "transcription"}) == seconds_before + 4.0
    assert sample("parakeet_batch_size_count", {"batcher": "transcription-batcher"}) == batches_before + 1
