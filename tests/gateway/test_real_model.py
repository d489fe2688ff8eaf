"""The gateway over the real transcription stack: the fixture TDT model behind an in-process orchestrator.

What comes out of the openai client must equal what the TranscriptionServicer gives for the
same file directly, so nothing is lost or reshaped wrongly on the way through gRPC and HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from parakeet.v1 import audio_pb2, transcription_pb2
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer, check_language
from tests.support.audio import sweep, wav_bytes

pytestmark = pytest.mark.slow

WAV = wav_bytes(sweep(4.0, seed=5))
FILE = ("call.wav", WAV)


@pytest.fixture(scope="module")
def transcription(tdt_model_path: Path) -> Iterator[TranscriptionServicer]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tdt_model_path)))
    engine.load()
    engine.warm_up()
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=8, max_wait_ms=20.0))
    yield TranscriptionServicer(runner)
    runner.close()


@pytest.fixture
def real_gateway(start_gateway, transcription):
    def no_diarization(request, context):
        raise AssertionError("diarize=False must not reach the diarization backend")

    backends = InProcessBackends(transcription.Transcribe, no_diarization, lambda: None)
    return start_gateway(servicer=OrchestratorServicer(backends))


def direct(transcription: TranscriptionServicer, **fields) -> transcription_pb2.TranscribeResponse:
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=WAV), **fields)
    return transcription.Transcribe(request, JobContext(60.0))


def test_verbose_json_equals_the_direct_transcript(real_gateway, transcription) -> None:
    expected = direct(transcription, word_timestamps=True)
    raw = real_gateway.client().audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=FILE,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    verbose = raw.parse()
    assert raw.headers["x-parakeet-model"] == "parakeet-tdt-tiny-v1.nemo"
    assert (verbose.text, verbose.language, verbose.duration) == (expected.text, "en", 4.0)
    assert len(verbose.words) > 5
    assert [(w.word, w.start, w.end) for w in verbose.words] == [
        (w.word, w.start, w.end) for w in expected.words
    ]
    assert [(s.id, s.start, s.end, s.text) for s in verbose.segments] == [
        (s.id, s.start, s.end, s.text) for s in expected.segments
    ]
    assert {w.model_extra["speaker"] for w in verbose.words} == {None}
    assert {s.model_extra["speaker"] for s in verbose.segments} == {None}


def test_json_and_subtitles_equal_the_direct_documents(real_gateway, transcription) -> None:
    client = real_gateway.client()
    assert client.audio.transcriptions.create(model="m", file=FILE).text == direct(transcription).text
    for name, value in (("srt", audio_pb2.RESPONSE_FORMAT_SRT), ("vtt", audio_pb2.RESPONSE_FORMAT_VTT)):
        document = client.audio.transcriptions.create(model="m", file=FILE, response_format=name)
        assert document == direct(transcription, response_format=value).document
        assert document.count(" --> ") >= 1


def test_unsupported_language_is_400_with_the_services_message(real_gateway) -> None:
    with pytest.raises(InvalidRequest) as expected:
        check_language("de")
    with pytest.raises(openai.BadRequestError) as raised:
        real_gateway.client().audio.transcriptions.create(model="m", file=FILE, language="de")
    assert raised.value.body["message"] == expected.value.message
    assert raised.value.body["code"] == "invalid_argument"
