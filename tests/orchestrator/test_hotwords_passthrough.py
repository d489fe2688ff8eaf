"""Orchestrate passes hotwords to the transcription backend as given, and refuses bad ones before
any backend is called (scripted backends: they stand in for the services, not for a model)."""

from __future__ import annotations

import pytest

from parakeet.v1 import audio_pb2, orchestrator_pb2, streaming_pb2
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.orchestrator.live import backend_configs
from tests.orchestrator.test_servicer import Scripted, orchestrate


def test_orchestrate_passes_hotwords_to_transcription_only() -> None:
    scripted = Scripted()
    hotwords = [audio_pb2.Hotword(phrase="Kubernetes", boost=3.0), audio_pb2.Hotword(phrase="Ada Lovelace")]
    orchestrate(scripted, diarize=True, hotwords=hotwords)
    (sent,) = scripted.transcribe_requests
    assert [(h.phrase, h.HasField("boost"), h.boost) for h in sent.hotwords] == [
        ("Kubernetes", True, 3.0),
        ("Ada Lovelace", False, 0.0),
    ]
    assert len(scripted.diarize_requests) == 1


def test_orchestrate_refuses_bad_hotwords_before_calling_backends() -> None:
    scripted = Scripted()
    with pytest.raises(InvalidRequest) as caught:
        orchestrate(scripted, diarize=True, hotwords=[audio_pb2.Hotword(phrase="x", boost=50.0)])
    assert caught.value.reason == "INVALID_FIELD"
    assert "hotwords[0]: boost must be in (0, 10] (got 50)" in str(caught.value)
    assert scripted.transcribe_requests == [] and scripted.diarize_requests == []


def test_streaming_orchestrate_gives_hotwords_to_the_transcription_stream_not_diarization() -> None:
    config = streaming_pb2.StreamingConfig(diarize=True, hotwords=[audio_pb2.Hotword(phrase="Kubernetes")])
    asr, diar = backend_configs(config)
    assert [h.phrase for h in asr.hotwords] == ["Kubernetes"]
    assert list(diar.hotwords) == []
    assert orchestrator_pb2.OrchestrateRequest(hotwords=config.hotwords).hotwords[0].phrase == "Kubernetes"
