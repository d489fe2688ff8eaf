"""The committed stubs are exactly what proto/ generates, and the check notices when they are not."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.servers import REPO_ROOT
from tools import codegen

STUBS = REPO_ROOT / "clients" / "python"
PROTO = REPO_ROOT / "proto"


def test_committed_stubs_match_the_contract() -> None:
    assert codegen.stale_files(STUBS, PROTO) == []


def test_a_proto_edit_without_regeneration_is_reported_stale(tmp_path: Path) -> None:
    edited = tmp_path / "proto"
    shutil.copytree(PROTO, edited)
    audio = edited / "parakeet" / "v1" / "audio.proto"
    audio.write_text(
        audio.read_text().replace("string format = 3;", "string format = 3;\n  string note = 4;")
    )
    assert codegen.stale_files(STUBS, edited) == ["parakeet/v1/audio_pb2.py", "parakeet/v1/audio_pb2.pyi"]


def test_a_deleted_stub_is_reported_stale(tmp_path: Path) -> None:
    stubs = tmp_path / "stubs"
    shutil.copytree(STUBS / "parakeet", stubs / "parakeet")
    (stubs / "parakeet" / "v1" / "diarization_pb2_grpc.py").unlink()
    assert codegen.stale_files(stubs, PROTO) == ["parakeet/v1/diarization_pb2_grpc.py"]


def test_every_service_is_generated_from_the_client_package() -> None:
    from parakeet.v1 import diarization_pb2, orchestrator_pb2, transcription_pb2

    names = [
        module.DESCRIPTOR.services_by_name[name].full_name
        for module, name in (
            (transcription_pb2, "TranscriptionService"),
            (diarization_pb2, "DiarizationService"),
            (orchestrator_pb2, "OrchestratorService"),
        )
    ]
    assert names == [
        "parakeet.v1.TranscriptionService",
        "parakeet.v1.DiarizationService",
        "parakeet.v1.OrchestratorService",
    ]
    assert transcription_pb2.__file__.startswith(str(STUBS))
