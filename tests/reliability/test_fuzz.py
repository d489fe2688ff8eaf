"""Property-based fuzzing (hypothesis) of the JSON job input and of the proto requests.

Invariant everywhere: never an unhandled exception. A request either gets a valid response or a
ServiceError (gRPC: its status code; RunPod: `{"error": str, "error_code": ...}`) whose message is
non-empty and carries no traceback. The model is not the point here, so the servicers run over
scripted engines (instant, deterministic); decoding, fetching, validation, merging and rendering
are the real code. URLs can only name non-public literal addresses: the resolver guard refuses
names and public addresses, and PARAKEET_FETCH_ALLOW is unset, so nothing is ever fetched.
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import grpc
import pytest
from google.protobuf.message import Message

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (.venv/bin/pip install hypothesis)")
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from parakeet.runpod import response_from_json
from parakeet.v1 import audio_pb2, diarization_pb2, diarization_pb2_grpc, orchestrator_pb2, transcription_pb2
from parakeet_server.core.audio import _demuxer
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.errors import ServiceError
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.core.runpod_shim import parse_job_input, run_job
from parakeet_server.diarization import server as diarization_server
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import server as transcription_server
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.reliability import corpus, media
from tests.reliability.conftest import ResolverGuard
from tests.reliability.scripted import Context, ScriptedDiarizer, ScriptedTranscriber
from tests.support.servers import wait_for_health

# Hypothesis keeps a cache of constants beside the tests by default (.hypothesis/ in the checkout);
# keep it out of the repository. derandomize=True: the same examples every run, no database needed.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "parakeet-reliability-hypothesis")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@pytest.fixture(scope="module")
def servicers() -> Iterator[dict[str, Callable[[Any, Any], Message]]]:
    runner = TranscriptionRunner(ScriptedTranscriber(), BatchPolicy(max_batch_size=4, max_wait_ms=1.0))
    transcription = TranscriptionServicer(runner)
    diarization = DiarizationServicer(ScriptedDiarizer())  # type: ignore[arg-type]
    orchestrator = OrchestratorServicer(
        InProcessBackends(transcription.Transcribe, diarization.Diarize, warm_up=lambda: None)
    )
    yield {
        "transcription": transcription.Transcribe,
        "diarization": diarization.Diarize,
        "orchestrator": orchestrator.Orchestrate,
    }
    runner.close()


@pytest.fixture(scope="module", autouse=True)
def no_fetching(resolver_guard: ResolverGuard) -> Iterator[ResolverGuard]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PARAKEET_FETCH_ALLOW", raising=False)
        yield resolver_guard


# -- strategies -------------------------------------------------------------------------------

NON_PUBLIC_URLS = [
    "http://127.0.0.1:9/a.wav",
    "http://10.0.0.1/a.wav",
    "https://169.254.169.254/latest/meta-data/",
    "http://[::1]/a.wav",
    "http://192.168.1.1:8080/x.mp3",
    "ftp://127.0.0.1/a.wav",
    "file:///etc/passwd",
    "http:///a.wav",
    "http://[::1",
]
AUDIO_BYTES = [
    media.NOT_AUDIO,
    b"",
    media.RANDOM_BYTES[:64],
    media.empty_wav(),
    media.TRUNCATED_WAV_HEADER,
    media.mp3(2.0)[:400],
    media.mp3(2.0),
    media.nan_wav(),
    media.video_only(),
]
SAFE_FORMAT_HINTS = ["", "wav", "WAV", ".mp3", " flac ", "ogg", "m4a", "webm", "pcm_s16le", "bogus"]

# Format hints: never the name of an FFmpeg demuxer that opens other resources (hls, concat,
# devices); see the corpus's hls/ffconcat cases for why.
format_hints = st.one_of(
    st.sampled_from(SAFE_FORMAT_HINTS),
    st.text(max_size=12).filter(lambda hint: _demuxer(hint) not in av.formats_available),
)
GOOD_AUDIO = [media.good_wav(), media.mp3(2.0), media.mp3(2.0)[: len(media.mp3(2.0)) // 2]]
# Near-valid inputs are mostly valid: each strategy below is `often(valid) | sometimes(anything)`.
audio_bytes = st.one_of(
    st.sampled_from(GOOD_AUDIO),
    st.sampled_from(GOOD_AUDIO),
    st.sampled_from(AUDIO_BYTES),
    st.binary(max_size=256),
)
uris = st.one_of(
    st.sampled_from(NON_PUBLIC_URLS),
    st.text(max_size=40),
    st.builds(lambda host: f"http://{host}/a.wav", st.text(max_size=20)),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
int32 = st.integers(-(2**31), 2**31 - 1)
times = st.floats(allow_nan=True, allow_infinity=True, width=64)
valid_formats = st.sampled_from(
    ["json", "verbose_json", "text", "srt", "vtt", "rttm", "SRT", "RESPONSE_FORMAT_VTT"]
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mostly(valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, valid, anything)


job_audio = st.one_of(
    st.sampled_from(GOOD_AUDIO).map(b64),
    st.sampled_from(GOOD_AUDIO).map(b64),
    audio_bytes.map(b64),
    st.sampled_from(NON_PUBLIC_URLS),
    st.builds(lambda data: "data:audio/wav;base64," + b64(data), audio_bytes),
    st.fixed_dictionaries(
        {}, optional={"content": audio_bytes.map(b64), "uri": uris, "format": format_hints}
    ),
    json_values,
)
valid_turns = st.lists(
    st.builds(
        lambda start, length, speaker: {"start": start, "end": start + length, "speaker": speaker},
        st.floats(0, 5),
        st.floats(0, 2),
        st.sampled_from(["SPEAKER_00", "SPEAKER_01", "A"]),
    ),
    max_size=4,
)
any_turns = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "start": st.one_of(times.map(lambda t: t if math.isfinite(t) else str(t)), json_values),
            "end": st.one_of(times.map(lambda t: t if math.isfinite(t) else str(t)), json_values),
            "speaker": st.one_of(st.text(max_size=10), json_values),
        },
    ),
    max_size=4,
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "audio_format": mostly(st.sampled_from(SAFE_FORMAT_HINTS), st.one_of(format_hints, json_values)),
    "language": mostly(
        st.sampled_from(["", "en", "EN-us", "english"]), st.one_of(st.text(max_size=8), json_values)
    ),
    "timestamps": mostly(st.booleans(), json_values),
    "word_timestamps": mostly(st.booleans(), json_values),
    "diarize": mostly(st.booleans(), json_values),
    "speakers_optional": mostly(st.booleans(), json_values),
    "exclusive": mostly(st.booleans(), json_values),
    "num_speakers": mostly(st.integers(1, 4), st.one_of(st.integers(-3, 120), json_values)),
    "min_speakers": mostly(st.integers(1, 2), st.one_of(st.integers(-3, 120), json_values)),
    "max_speakers": mostly(st.integers(2, 6), st.one_of(st.integers(-3, 120), json_values)),
    "response_format": mostly(valid_formats, st.one_of(st.just("mp4"), int32, json_values)),
    "diarization_segments": mostly(valid_turns, st.one_of(any_turns, json_values)),
}


def near_valid_jobs(service: str) -> st.SearchStrategy[dict[str, Any]]:
    """Job inputs with the fields clients send to `service`, mostly plausible, sometimes any JSON."""
    fields = set(corpus.REQUEST_TYPES[service].DESCRIPTOR.fields_by_name) | {"audio_format"}
    optional = {name: value for name, value in FIELD_VALUES.items() if name in fields}
    return st.fixed_dictionaries({"audio": job_audio}, optional=optional)


def turns() -> st.SearchStrategy[list[audio_pb2.SpeakerTurn]]:
    valid = st.lists(
        st.builds(
            lambda start, length: audio_pb2.SpeakerTurn(
                start=start, end=start + length, speaker="SPEAKER_00"
            ),
            st.floats(0, 5),
            st.floats(0, 2),
        ),
        max_size=4,
    )
    anything = st.lists(
        st.builds(audio_pb2.SpeakerTurn, start=times, end=times, speaker=st.text(max_size=8)), max_size=5
    )
    return mostly(valid, anything)


def audio_messages() -> st.SearchStrategy[audio_pb2.Audio]:
    return st.one_of(
        st.builds(audio_pb2.Audio, content=st.sampled_from(GOOD_AUDIO)),
        st.builds(
            audio_pb2.Audio, content=st.sampled_from(GOOD_AUDIO), format=st.sampled_from(SAFE_FORMAT_HINTS)
        ),
        st.builds(audio_pb2.Audio, content=audio_bytes, format=format_hints),
        st.builds(audio_pb2.Audio, uri=uris, format=format_hints),
        st.just(audio_pb2.Audio()),
    )


def with_optional(message: Message, **fields: int | bool | None) -> Message:
    for name, value in fields.items():
        if value is not None:
            setattr(message, name, value)
    return message


response_formats = mostly(st.sampled_from(list(audio_pb2.ResponseFormat.values())), int32)
speaker_counts = st.one_of(st.none(), st.none(), st.integers(1, 4), int32)
REQUESTS: dict[str, st.SearchStrategy[Message]] = {
    "transcription": st.builds(
        lambda audio, language, ts, wts, segments, fmt: with_optional(
            transcription_pb2.TranscribeRequest(
                audio=audio, language=language, diarization_segments=segments, response_format=fmt
            ),
            timestamps=ts,
            word_timestamps=wts,
        ),
        audio_messages(),
        mostly(st.sampled_from(["", "en"]), st.text(max_size=10)),
        st.none() | st.booleans(),
        st.none() | st.booleans(),
        turns(),
        response_formats,
    ),
    "diarization": st.builds(
        lambda audio, num, low, high, exclusive, fmt: with_optional(
            diarization_pb2.DiarizeRequest(audio=audio, exclusive=exclusive, response_format=fmt),
            num_speakers=num,
            min_speakers=low,
            max_speakers=high,
        ),
        audio_messages(),
        speaker_counts,
        speaker_counts,
        speaker_counts,
        st.booleans(),
        response_formats,
    ),
    "orchestrator": st.builds(
        lambda audio, language, diarize, optional, num, low, high, fmt, wts: with_optional(
            orchestrator_pb2.OrchestrateRequest(
                audio=audio,
                language=language,
                diarize=diarize,
                speakers_optional=optional,
                response_format=fmt,
            ),
            num_speakers=num,
            min_speakers=low,
            max_speakers=high,
            word_timestamps=wts,
        ),
        audio_messages(),
        mostly(st.sampled_from(["", "en"]), st.text(max_size=10)),
        st.booleans(),
        st.booleans(),
        speaker_counts,
        speaker_counts,
        speaker_counts,
        response_formats,
        st.none() | st.booleans(),
    ),
}

# -- invariants -------------------------------------------------------------------------------


def assert_actionable(message: object) -> None:
    assert isinstance(message, str) and message.strip(), f"an empty error message: {message!r}"
    assert "Traceback" not in message and 'File "' not in message, message


def assert_valid_output(output: dict[str, Any], service: str) -> None:
    """What run_job returns: an error with its code, or JSON that reads back as the response."""
    assert isinstance(output, dict)
    event("error" if "error" in output else "response")
    if "error" in output:
        assert_actionable(output["error"])
        assert output.get("error_code") in {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}, output
        return
    json.dumps(output, allow_nan=False)
    response_from_json(output, corpus.RESPONSE_TYPES[service])


# -- the properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", corpus.SERVICES)
@FUZZ
@given(job_input=json_values)
def test_parse_job_input_takes_any_json_and_raises_only_service_errors(service: str, job_input: Any) -> None:
    request_type = corpus.REQUEST_TYPES[service]
    try:
        request = parse_job_input(job_input, request_type)
    except ServiceError as error:
        event("InvalidRequest")
        assert_actionable(error.message)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        event("parsed")
        assert isinstance(request, request_type)


@pytest.mark.parametrize("service", corpus.SERVICES)
@FUZZ
@given(data=st.data())
def test_run_job_answers_any_near_valid_job_with_a_response_or_an_error(
    service: str, data: st.DataObject, servicers: dict[str, Callable[[Any, Any], Message]]
) -> None:
    job_input = data.draw(near_valid_jobs(service))
    output = run_job({"id": "fuzz", "input": job_input}, corpus.REQUEST_TYPES[service], servicers[service])
    assert_valid_output(output, service)


@pytest.mark.parametrize("service", corpus.SERVICES)
@FUZZ
@given(data=st.data())
def test_servicers_answer_any_request_with_a_response_or_a_service_error(
    service: str, data: st.DataObject, servicers: dict[str, Callable[[Any, Any], Message]]
) -> None:
    request = data.draw(REQUESTS[service])
    try:
        response = servicers[service](request, Context())
    except ServiceError as error:
        event(error.code.name)
        assert_actionable(error.message)
        assert error.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (
            error.message
        )
    else:
        event("response")
        assert isinstance(response, corpus.RESPONSE_TYPES[service])
        response.SerializeToString()


@pytest.fixture(scope="module")
def grpc_channel(servicers: dict[str, Callable[[Any, Any], Message]]) -> Iterator[grpc.Channel]:
    """The scripted servicers behind a real in-process gRPC server (interceptor included)."""
    transcription = servicers["transcription"].__self__  # type: ignore[attr-defined]
    diarization = servicers["diarization"].__self__  # type: ignore[attr-defined]
    orchestrator = servicers["orchestrator"].__self__  # type: ignore[attr-defined]

    def register_diarization(server: grpc.Server) -> None:
        diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(diarization, server)

    host = ServiceHost(
        [
            transcription_server.hosted_service(transcription),
            HostedService(diarization_server.SERVICE_NAME, register_diarization),
            orchestrator_server.hosted_service(orchestrator),
        ],
        ServerOptions(host="127.0.0.1", port=0, grace_s=0.5),
    )
    host.start()
    wait_for_health(host.address, timeout=60)
    with grpc.insecure_channel(host.address) as channel:
        yield channel
    host.drain(0.5)


@pytest.mark.parametrize("service", corpus.SERVICES)
@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_over_grpc_random_requests_get_a_response_or_a_client_error_code(
    service: str, data: st.DataObject, grpc_channel: grpc.Channel
) -> None:
    request = data.draw(REQUESTS[service])
    call = grpc_channel.unary_unary(corpus.METHODS[service])
    try:
        reply = call(request.SerializeToString(), timeout=30)
    except grpc.RpcError as error:
        event(error.code().name)
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (
            error.code(),
            error.details(),
        )
        assert_actionable(error.details())
    else:
        event("OK")
        corpus.RESPONSE_TYPES[service].FromString(reply)
