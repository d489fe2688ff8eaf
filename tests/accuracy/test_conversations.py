"""The whole offline stack on synthesized conversations: right words, right speakers.

Trained tiny TDT + offline diarization (silero-vad + resemblyzer), joined by the orchestrator:
the scores come from eval (the code `make eval` runs), on conversations whose seeds
neither the ASR training nor the diarization tuning (seeds 1000 and up) saw.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from eval.run import FIXTURE_MODEL, Floors, Orchestrate, embedded, evaluate, read_manifest, remote
from eval.synth import write_corpus
from parakeet.v1 import orchestrator_pb2_grpc
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.orchestrator.server import SERVICE_NAME
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from tests.support.servers import REPO_ROOT, wait_for_health

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

WER_FLOOR, WDER_FLOOR, DER_FLOOR = Floors().wer, Floors().wder, Floors().der


@pytest.fixture(scope="module")
def in_process() -> Orchestrate:
    return embedded(str(FIXTURE_MODEL), "offline", diarize=True)


@pytest.fixture(scope="module")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("conversations")
    return [
        write_corpus(
            root / f"{speakers}",
            seed=40 + speakers,
            num_sentences=0,
            num_conversations=2,
            num_speakers=speakers,
            num_turns=12,
        )
        for speakers in (2, 3)
    ]


@pytest.fixture(scope="module")
def over_grpc(in_process: Orchestrate) -> Iterator[Orchestrate]:
    """The same stack behind a real gRPC OrchestratorService on loopback."""
    from parakeet_server.orchestrator.wiring import embedded_backends

    servicer = OrchestratorServicer(embedded_backends(str(FIXTURE_MODEL), "offline"))

    def register(server: grpc.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)

    host = ServiceHost(
        [HostedService(SERVICE_NAME, register, warm_up=servicer.backends.warm_up)],
        ServerOptions(host="127.0.0.1", port=0, grace_s=0.5),
    )
    host.start()
    try:
        wait_for_health(host.address, SERVICE_NAME, timeout=120)
        yield remote(host.address, token=None)
    finally:
        host.drain(0.5)


@pytest.mark.parametrize("transport", ["in-process", "grpc"])
def test_conversations_come_back_with_the_right_words_and_speakers(
    transport: str, conversations: list[Path], request: pytest.FixtureRequest
) -> None:
    orchestrate = request.getfixturevalue("in_process" if transport == "in-process" else "over_grpc")
    items = [item for manifest in conversations for item in read_manifest(manifest)]
    assert len(items) == 4 and all(item.words and item.turns for item in items)
    summary = evaluate(items, orchestrate, diarize=True).summary()
    assert summary["wer"] is not None and summary["wer"] <= WER_FLOOR, summary
    assert summary["wder"] is not None and summary["wder"] <= WDER_FLOOR, summary
    assert summary["der"] is not None and summary["der"] <= DER_FLOOR, summary


def test_make_eval_prints_every_score_and_holds_the_floors(tmp_path: Path) -> None:
    scores = tmp_path / "scores.json"
    command = [sys.executable, "-m", "eval", "--sentences", "12", "--conversations", "1"]
    realistic = ["--realistic-conversations", "2", "--realistic-minutes", "1"]
    result = subprocess.run(
        [*command, *realistic, "--check-floors", "--quiet", "--json", str(scores)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "set",
        "files",
        "audio_minutes",
        "wer",
        "der",
        "jer",
        "wder",
        "speaker_count_exact",
        "real_time_factor",
    ]
    report = json.loads(scores.read_text())
    rows = report["sets"]
    per_count = [f"{n}-speaker conversations" for n in (2, 3, 4)]
    assert list(rows) == [
        "sentences",
        *per_count,
        "2-4 speaker conversations",
        "realistic test conversations",
    ]
    assert rows["sentences"]["files"] == 12 and rows["sentences"]["der"] is None
    assert rows["2-4 speaker conversations"]["files"] == 3
    for name in per_count:
        assert rows[name]["files"] == 1
        assert all(rows[name][score] is not None for score in ("wer", "der", "jer", "wder"))
    # realistic test conversations 0 and 1: one speaker in the `varied` condition, two in a `room`
    assert list(report["corpora"]) == ["clean", "realistic"]
    assert report["corpora"]["realistic"]["files"] == 2
    assert report["corpora"]["clean"]["files"] == 15
    assert list(report["by_speaker_count"]) == ["1", "2", "3", "4"]
    assert list(report["by_speaker_count"]["1"]) == ["realistic"]
    assert list(report["by_speaker_count"]["2"]) == ["clean", "realistic"]
    assert list(report["by_condition"]) == ["clean", "varied", "room"]
    assert report["floors_missed"] == []
    assert "score             clean    realistic" in table
    assert table[-1] == "floors met"


def test_make_demo_prints_the_scripted_conversation_with_speakers() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "demo"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    script = re.findall(r"^\s+\[[ \d.]+-[ \d.]+\] (spk\d): (.+)$", result.stdout, flags=re.MULTILINE)
    spoken = re.findall(r"^(SPEAKER_\d\d): (.+)$", result.stdout, flags=re.MULTILINE)
    assert len(script) == 6, result.stdout
    assert [text for _, text in spoken] == [text for _, text in script]
    mapping = dict(zip((who for who, _ in script), (who for who, _ in spoken), strict=False))
    assert len(set(mapping.values())) == 2
    assert [who for who, _ in spoken] == [mapping[who] for who, _ in script]


def test_make_demo_live_streams_the_conversation_as_captions_with_speakers() -> None:
    """`make demo-live`: the same words as the script, live; speakers decided from what was heard
    so far, so most (not necessarily all) words carry the speaker the whole-file run gives."""
    result = subprocess.run(
        ["make", "--no-print-directory", "demo-live"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    script = re.findall(r"^\s+\[[ \d.]+-[ \d.]+\] (spk\d): (.+)$", result.stdout, flags=re.MULTILINE)
    captions = re.findall(r"^\[[\d:.]+-[\d:.]+\] (SPEAKER_\d\d): (.+)$", result.stdout, flags=re.MULTILINE)
    assert len(script) == 6, result.stdout
    said = [(who, word) for who, text in script for word in text.split()]
    heard = [(who, word) for who, text in captions for word in text.split()]
    assert [word for _, word in heard] == [word for _, word in said], result.stdout
    agree: dict[tuple[str, str], int] = {}
    for (reference, _), (label, _) in zip(said, heard, strict=True):
        agree[reference, label] = agree.get((reference, label), 0) + 1
    labels = [*sorted({label for _, label in agree}), "none"]
    matched = max(
        agree.get(("spk0", a), 0) + agree.get(("spk1", b), 0) for a, b in itertools.permutations(labels, 2)
    )
    assert matched >= 0.85 * len(said), (agree, result.stdout)
