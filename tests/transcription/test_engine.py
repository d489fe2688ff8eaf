"""The NeMo engine on the random-weight fixture: fidelity, batching, windowed long audio, model resolution."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from parakeet_server.core.audio import decode_bytes
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.transcription.engine import (
    EngineTranscript,
    TranscriptionEngine,
    TranscriptionEngineConfig,
)
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.windows import FrameWord
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import REPO_ROOT
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
import json, sys
from pathlib import Path
import numpy as np
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from tests.support.audio import sweep
def kb(field):
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field)).split()[1])
engine = TranscriptionEngine(TranscriptionEngineConfig(model=sys.argv[1]))
engine.load()
samples = np.resize(sweep(61.0, seed=0), int(float(sys.argv[2]) * 16000))  # float32 from the start
transcript = engine.transcribe([samples])[0]
print(json.dumps({
    "words": [[w.word, w.start, w.end] for w in transcript.words],
    "peak_rss_mb": kb("VmHWM:") / 1024,
}))
"""


# One thread: the memory measured is the same, and on a shared runner two threads per process
# contend so much that the hour takes ten times longer.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.timeout(900)
def test_an_hour_of_audio_transcribes_in_windows_under_4_gb(tdt_model_path: Path) -> None:
    """VmHWM covers the whole process: model, the hour's samples and every window's pass."""
    hour = 3600.0
    result = subprocess.run(
        [sys.executable, "-c", LONG_AUDIO_SCRIPT, str(tdt_model_path), str(hour)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=850,
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    words = report["words"]
    assert report["peak_rss_mb"] < 4 * 1024
    starts = [start for _, start, _ in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # nothing doubled at a seam
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert max(gaps) < 5.0  # no stretch of the hour lost
    assert starts[0] < 5.0 and words[-1][2] > hour - 10.0


def test_one_window_through_the_windowed_path_equals_the_single_pass(engine) -> None:
    """Offsets to seconds, text and segments rebuilt from merged words are what NeMo gives."""
    samples = sweep(20.0, seed=3)
    single = engine.transcribe([samples])[0]
    windowed = engine._transcribe_windowed(samples)
    assert len(single.words) > 20
    assert windowed == single


def test_segments_are_rebuilt_at_sentence_ends_and_in_recording_seconds(engine) -> None:
    words = [FrameWord("hello", 100, 103), FrameWord("world.", 103, 106), FrameWord("again", 108, 110)]
    transcript = engine._transcript_from_words(words)
    assert transcript.text == "hello world. again"
    assert [(s.text, s.start, s.end) for s in transcript.segments] == [
        ("hello world.", 8.0, 8.48),
        ("again", 8.64, 8.8),
    ]
    assert [(w.start, w.end) for w in transcript.words] == [(8.0, 8.24), (8.24, 8.48), (8.64, 8.8)]
    assert engine._transcript_from_words([]) == EngineTranscript(text="", words=[], segments=[])


def test_long_recordings_go_through_windows_and_short_ones_through_bounded_passes(
    tdt_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = TranscriptionEngine(
        TranscriptionEngineConfig(
            model=str(tdt_model_path), window_s=10.0, window_overlap_s=2.0, window_batch_size=2
        )
    )
    engine.load()
    passes: list[list[int]] = []
    decode = engine._decode

    def spy(waveforms):
        passes.append([len(wave) for wave in waveforms])
        return decode(waveforms)

    monkeypatch.setattr(engine, "_decode", spy)
    clips = [
        sweep(3.0, seed=1),
        sweep(25.6, seed=2),
        sweep(4.0, seed=3),
        sweep(6.0, seed=4),
        sweep(2.0, seed=5),
    ]
    results = engine.transcribe(clips)
    window = 125 * 1280  # 10 s in 80 ms frames
    # Short clips share a pass up to two windows' worth of samples, padded to the longest.
    # The 25.6 s clip (320 frames): three windows of 10 s (overlaps of at least 2 s), two to a pass.
    assert passes == [[48000, 64000, 96000], [32000], [window, window], [window]]
    assert all(len(p) * max(p) <= 2 * window for p in passes)
    monkeypatch.setattr(engine, "_decode", decode)
    for clip, result in zip(clips, results, strict=True):
        if len(clip) <= window:  # pass grouping changes nothing (confidences to float noise)
            alone = engine.transcribe([clip])[0]
            assert (result.text, result.segments) == (alone.text, alone.segments)
            assert [(w.word, w.start, w.end) for w in result.words] == [
                (w.word, w.start, w.end) for w in alone.words
            ]
            assert [w.confidence for w in result.words] == pytest.approx(
                [w.confidence for w in alone.words], rel=1e-3
            )
    long = results[1]
    starts = [w.start for w in long.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert long.words[-1].end <= 25.6 + 0.2 and long.words[0].start < 2.0
    assert long.text == " ".join(w.word for w in long.words)


@pytest.mark.parametrize(
    ("window", "overlap", "batch"),
    [(10.0, 5.0, None), (10.0, -1.0, None), (10.0, 2.0, 0), (0.5, 0.0, None), (float("nan"), 1.0, None)],
)
def test_window_settings_that_cannot_work_are_refused(window, overlap, batch) -> None:
    with pytest.raises(ValueError, match="window"):
        TranscriptionEngineConfig(window_s=window, window_overlap_s=overlap, window_batch_size=batch)


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
