"""The NeMo engine on the random-weight fixture: fidelity, batching, long audio, model resolution."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.core.audio import decode_bytes
from services.core.batching import BatchPolicy
from services.core.context import JobContext
from services.core.errors import PreconditionFailed
from services.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from services.transcription.runner import TranscriptionRunner
from tests.audio_samples import sweep, wav_bytes
from tests.conftest import REPO_ROOT
from tests.transcription.conftest import reference_words


def test_engine_transcript_equals_direct_nemo_transcribe(engine, reference_model) -> None:
    samples = decode_bytes(wav_bytes(sweep(4.0, seed=3))).samples
    text, words = reference_words(reference_model, samples)
    transcript = engine.transcribe([samples])[0]
    assert transcript.text == text
    assert [(w.word, w.start, w.end) for w in transcript.words] == words
    assert len(words) >= 5
    assert all(w.confidence is not None and 0.0 <= w.confidence <= 1.0 for w in transcript.words)
    assert transcript.segments[0].start == words[0][1]
    assert transcript.segments[-1].end == words[-1][2]


def test_concurrent_requests_share_a_batch_and_match_unbatched_results(engine) -> None:
    clips = [sweep(2.0 + 0.5 * i, seed=i) for i in range(6)]
    alone = [engine.transcribe([clip])[0] for clip in clips]
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=6, max_wait_ms=500.0))
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(clips))

    def call(index: int) -> None:
        barrier.wait()
        results[index] = runner.transcribe(clips[index], JobContext(30.0))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    runner.close()
    assert max(runner.batcher.batch_sizes) > 1
    assert sum(runner.batcher.batch_sizes) == len(clips)
    for index, single in enumerate(alone):
        batched = results[index]
        assert batched.text == single.text
        assert [(w.word, w.start, w.end) for w in batched.words] == [
            (w.word, w.start, w.end) for w in single.words
        ]
        assert [w.confidence for w in batched.words] == pytest.approx(
            [w.confidence for w in single.words], rel=1e-3
        )


LONG_AUDIO_SCRIPT = """
import json, resource, sys
from services.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from tests.audio_samples import sweep
engine = TranscriptionEngine(TranscriptionEngineConfig(model=sys.argv[1], local_attention_after_s=300))
engine.load()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
samples = sweep(3600.0, seed=0)
transcript = engine.transcribe([samples])[0]
print(json.dumps({
    "words": [[w.word, w.start, w.end] for w in transcript.words],
    "attention": engine._model.cfg.encoder.self_attention_model,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_before_mb": before / 1024,
}))
"""


def test_an_hour_of_audio_transcribes_with_local_attention_in_bounded_memory(tdt_model_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LONG_AUDIO_SCRIPT, str(tdt_model_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    words = report["words"]
    # Full attention over 45,000 encoder frames would need tens of GB; local attention stays small.
    assert report["peak_rss_mb"] < 8 * 1024
    assert report["attention"] == "rel_pos"  # restored after the long pass
    starts = [start for _, start, _ in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # nothing doubled
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert max(gaps) < 5.0  # no stretch of the hour lost
    assert starts[0] < 5.0 and words[-1][2] > 3590.0


def _runpod_cache(tmp_path: Path, model: Path, repo: str = "nvidia/parakeet-tdt-0.6b-v2") -> Path:
    """A RunPod cached-model store holding `model` as `repo`'s snapshot, laid out as the hub cache does."""
    org, name = repo.split("/")
    repo_dir = tmp_path / "hub" / f"models--{org}--{name}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    shutil.copy(model, snapshot / f"{name}.nemo")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    return tmp_path / "hub"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the engine tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_hf_id_loads_from_the_runpod_model_cache_without_network(
    tdt_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    cache = _runpod_cache(tmp_path, tdt_model_path)
    monkeypatch.setenv("RUNPOD_HF_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = TranscriptionEngine(TranscriptionEngineConfig(model="nvidia/parakeet-tdt-0.6b-v2"))
    engine.load()
    assert engine.name == "nvidia/parakeet-tdt-0.6b-v2"
    samples = sweep(2.0, seed=1)
    local = TranscriptionEngine(TranscriptionEngineConfig(model=str(tdt_model_path)))
    local.load()
    assert engine.transcribe([samples])[0] == local.transcribe([samples])[0]


def test_hf_id_missing_from_every_cache_offline_is_a_precondition_naming_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv("RUNPOD_HF_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "also-empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = TranscriptionEngine(TranscriptionEngineConfig(model="nvidia/parakeet-tdt-0.6b-v2"))
    with pytest.raises(PreconditionFailed) as raised:
        engine.load()
    assert raised.value.message.startswith(
        "nvidia/parakeet-tdt-0.6b-v2 not found in the local Hugging Face caches"
    )


def test_a_directory_holding_a_nemo_file_loads(tdt_model_path: Path, tmp_path: Path) -> None:
    shutil.copy(tdt_model_path, tmp_path / "model.nemo")
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tmp_path)))
    engine.load()
    assert engine.name == tmp_path.name
    assert engine.transcribe([sweep(1.5)])[0].words


def test_a_path_that_is_not_a_model_is_a_precondition(tmp_path: Path) -> None:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tmp_path)))
    with pytest.raises(PreconditionFailed) as raised:
        engine.load()
    assert raised.value.message == f"no .nemo checkpoint in {tmp_path}"
