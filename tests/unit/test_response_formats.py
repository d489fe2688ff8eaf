"""The one table of response formats (parakeet.formats): it covers the proto, and an unknown or
disallowed format is refused with the same message and reason over gRPC, RunPod, the gateway
and the client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import pytest
from fastapi.testclient import TestClient

from parakeet import formats
from parakeet.errors import reason_of
from parakeet.formats import Rpc, UnsupportedFormat
from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    diarization_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)
from parakeet_server.core.formats import RENDERERS
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.core.runpod_shim import run_job
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription.servicer import TranscriptionServicer

AUDIO = audio_pb2.Audio(content=b"never decoded: the format is refused first")
URL = "https://example.com/call.wav"
NOT_TRANSCRIPT = "(it renders a transcript: use the transcription or orchestrator service)"
NOT_TURNS = "(it lists speaker turns: use the diarization or orchestrator service)"


def _unused(*_args: Any) -> Any:
    raise AssertionError("a refused format must not reach a backend")


# The servicers never get past the format check here, so they need no model.
TRANSCRIPTION = TranscriptionServicer(cast(Any, None))
DIARIZATION = DiarizationServicer(cast(Any, None))
ORCHESTRATOR = OrchestratorServicer(InProcessBackends(_unused, _unused, lambda: None))


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    """The three servicers on one gRPC server, behind the production interceptors."""
    from parakeet_server.core.grpc_server import ServerOptions, ServiceHost

    services = [
        HostedService(
            "parakeet.v1.TranscriptionService",
            lambda server: transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(
                TRANSCRIPTION, server
            ),
        ),
        HostedService(
            "parakeet.v1.DiarizationService",
            lambda server: diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(DIARIZATION, server),
        ),
        HostedService(
            "parakeet.v1.OrchestratorService",
            lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
                ORCHESTRATOR, server
            ),
        ),
    ]
    host = ServiceHost(services, ServerOptions(host="127.0.0.1", port=0, grace_s=1.0))
    host.start()
    assert host.wait_until_warm(30)
    with grpc.insecure_channel(host.address) as opened:
        yield opened
    host.drain(0.5)


@pytest.fixture(scope="module")
def gateway() -> Iterator[TestClient]:
    """The gateway app; it refuses a format before it calls the orchestrator, so none runs."""
    with TestClient(create_app(GatewayConfig(orchestrator="127.0.0.1:9"))) as client:
        yield client


def _grpc(
    channel: grpc.Channel, rpc: Rpc, response_format: int, diarize: bool = False
) -> tuple[str, str, str]:
    """(code, reason, message) of the refused call."""
    call: Callable[[], Any]
    if rpc is Rpc.TRANSCRIBE:
        stub_t = transcription_pb2_grpc.TranscriptionServiceStub(channel)
        request_t = transcription_pb2.TranscribeRequest(audio=AUDIO, response_format=response_format)  # type: ignore[arg-type]
        call = lambda: stub_t.Transcribe(request_t, timeout=10)  # noqa: E731
    elif rpc is Rpc.DIARIZE:
        stub_d = diarization_pb2_grpc.DiarizationServiceStub(channel)
        request_d = diarization_pb2.DiarizeRequest(audio=AUDIO, response_format=response_format)  # type: ignore[arg-type]
        call = lambda: stub_d.Diarize(request_d, timeout=10)  # noqa: E731
    else:
        stub_o = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        request_o = orchestrator_pb2.OrchestrateRequest(
            audio=AUDIO,
            response_format=response_format,  # type: ignore[arg-type]
            diarize=diarize,
        )
        call = lambda: stub_o.Orchestrate(request_o, timeout=10)  # noqa: E731
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = cast(grpc.RpcError, raised.value)
    return error.code().name, reason_of(error) or "", error.details() or ""


_JOBS: dict[Rpc, tuple[type[Any], Callable[[Any, Any], Any]]] = {
    Rpc.TRANSCRIBE: (transcription_pb2.TranscribeRequest, TRANSCRIPTION.Transcribe),
    Rpc.DIARIZE: (diarization_pb2.DiarizeRequest, DIARIZATION.Diarize),
    Rpc.ORCHESTRATE: (orchestrator_pb2.OrchestrateRequest, ORCHESTRATOR.Orchestrate),
}


def _runpod(rpc: Rpc, response_format: str | int, diarize: bool = False) -> tuple[str, str, str]:
    request_type, servicer = _JOBS[rpc]
    job_input: dict[str, Any] = {"audio": URL, "response_format": response_format}
    if rpc is Rpc.ORCHESTRATE:
        job_input["diarize"] = diarize
    output = run_job({"input": job_input}, request_type, servicer)
    assert set(output) == {"error", "error_code", "reason"}, output
    return output["error_code"], output["reason"], output["error"]


def _http(gateway: TestClient, response_format: str, diarize: bool = False) -> tuple[str, str, str]:
    response = gateway.post(
        "/v1/audio/transcriptions",
        files={"file": ("call.wav", b"RIFF", "audio/wav")},
        data={"response_format": response_format, "diarize": str(diarize).lower()},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "response_format"
    return error["code"].upper(), error["reason"], error["message"]


def _client(value: str | int, rpc: Rpc, diarize: bool = True) -> tuple[str, str, str]:
    with pytest.raises(UnsupportedFormat) as raised:
        formats.parse(value, rpc, speakers=diarize)
    return raised.value.code.name, raised.value.reason, raised.value.details


def _refusal(message: str) -> tuple[str, str, str]:
    return "INVALID_ARGUMENT", "UNSUPPORTED_FORMAT", message


def test_rttm_on_transcription_reads_the_same_on_grpc_runpod_and_the_client(channel) -> None:
    expected = _refusal(
        f"the transcription service has no response_format rttm {NOT_TURNS}; "
        "use one of: json, verbose_json, text, srt, vtt"
    )
    assert _grpc(channel, Rpc.TRANSCRIBE, audio_pb2.RESPONSE_FORMAT_RTTM) == expected
    assert _runpod(Rpc.TRANSCRIBE, "rttm") == expected
    assert _runpod(Rpc.TRANSCRIBE, "RESPONSE_FORMAT_RTTM") == expected
    assert _client("rttm", Rpc.TRANSCRIBE) == expected


def test_srt_on_diarization_reads_the_same_on_grpc_runpod_and_the_client(channel) -> None:
    expected = _refusal(
        f"the diarization service has no response_format srt {NOT_TRANSCRIPT}; use one of: json, verbose_json, rttm"
    )
    assert _grpc(channel, Rpc.DIARIZE, audio_pb2.RESPONSE_FORMAT_SRT) == expected
    assert _runpod(Rpc.DIARIZE, "srt") == expected
    assert _client("SRT", Rpc.DIARIZE) == expected


@pytest.mark.parametrize(
    ("rpc", "allowed"),
    [
        (Rpc.TRANSCRIBE, "json, verbose_json, text, srt, vtt"),
        (Rpc.DIARIZE, "json, verbose_json, rttm"),
        (Rpc.ORCHESTRATE, "json, verbose_json, text, srt, vtt"),
    ],
)
def test_an_unknown_enum_value_reads_the_same_on_grpc_runpod_and_the_client(channel, rpc, allowed) -> None:
    expected = _refusal(f"the {rpc.value} service has no response_format 99; use one of: {allowed}")
    assert _grpc(channel, rpc, 99) == expected
    assert _runpod(rpc, 99) == expected
    assert _client(99, rpc, diarize=False) == expected


@pytest.mark.parametrize("rpc", list(Rpc))
def test_an_unknown_name_reads_the_same_on_runpod_and_the_client(rpc) -> None:
    allowed = ", ".join(formats.names(rpc))
    expected = _refusal(f"the {rpc.value} service has no response_format 'docx'; use one of: {allowed}")
    assert _runpod(rpc, "docx", diarize=True) == expected
    assert _client("docx", rpc) == expected


def test_the_gateway_refuses_as_the_orchestrator_does(channel, gateway) -> None:
    unknown = _refusal(
        "the orchestrator service has no response_format 'docx'; use one of: json, verbose_json, text, srt, vtt, rttm"
    )
    # The gateway also offers OpenAI's diarized_json (it reshapes the orchestrator's json), so its list
    # names it last; everything else reads the same.
    assert _http(gateway, "docx", diarize=True) == (*unknown[:2], f"{unknown[2]}, diarized_json")
    assert _runpod(Rpc.ORCHESTRATE, "docx", diarize=True) == unknown
    without_speakers = _refusal(
        "response_format rttm lists speaker turns: set diarize=true, or use one of: json, verbose_json, text, srt, vtt"
    )
    assert _http(gateway, "rttm") == (*without_speakers[:2], f"{without_speakers[2]}, diarized_json")
    assert _grpc(channel, Rpc.ORCHESTRATE, audio_pb2.RESPONSE_FORMAT_RTTM) == without_speakers
    assert _runpod(Rpc.ORCHESTRATE, "rttm") == without_speakers
    assert _client("rttm", Rpc.ORCHESTRATE, diarize=False) == without_speakers


def test_the_table_covers_every_value_of_the_proto_enum() -> None:
    for name, value in audio_pb2.ResponseFormat.items():
        row = formats.lookup(value)
        assert row is not None, name
        if name == "RESPONSE_FORMAT_UNSPECIFIED":
            assert row is formats.DEFAULT and row.name == "json"
        else:
            assert (row.value, f"RESPONSE_FORMAT_{row.name.upper()}") == (value, name)
            assert formats.lookup(name) is row and formats.lookup(row.name.upper()) is row
    assert len(formats.FORMATS) == len(audio_pb2.ResponseFormat.values()) - 1
    assert formats.names() == ["json", "verbose_json", "text", "srt", "vtt", "rttm"]


def test_every_document_format_has_a_renderer_and_every_rpc_renders_json() -> None:
    assert set(RENDERERS) == formats.document_names() == {"text", "srt", "vtt", "rttm"}
    for rpc in Rpc:
        assert formats.parse(None, rpc) == formats.parse("", rpc) == audio_pb2.RESPONSE_FORMAT_JSON
        assert formats.parse(audio_pb2.RESPONSE_FORMAT_UNSPECIFIED, rpc) == audio_pb2.RESPONSE_FORMAT_JSON


def test_a_refusal_is_both_an_invalid_argument_and_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^this API has no response_format True; use one of: json,"):
        formats.parse(True)
