"""`make bench`: the service's costs as ratios measured side by side in one run.

    python -m bench.run            # CPU-sized (tiny fixture model): a few minutes
    python -m bench.run --full     # adds 60-minute audio to the length sweep
    python -m bench.run --full-size  # parakeet-tdt-0.6b-v2-sized random-weight model (for a GPU)

Every figure is a ratio of two things measured here, in this process, on this machine, unless
it is an absolute GPU figure; the table says which floor each one must meet.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.common import MODELS_DIR, REPO_ROOT, Row, best_of, report
from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    orchestrator_pb2,
    transcription_pb2,
    transcription_pb2_grpc,
)
from services.core.audio import decode_bytes
from services.core.batching import BatchPolicy
from services.core.context import JobContext
from services.core.grpc_server import ServerOptions, ServiceHost
from services.core.runpod_shim import run_job
from services.orchestrator.backends import InProcessBackends
from services.orchestrator.servicer import OrchestratorServicer
from services.transcription import server as transcription_server
from services.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from services.transcription.runner import TranscriptionRunner
from services.transcription.servicer import TranscriptionServicer
from tests.audio_samples import encode, sweep, wav_bytes


def model_path(full_size: bool) -> Path:
    from tests.fixtures.nemo_tdt import PARAKEET_TDT_0_6B, TINY, build_tdt_fixture

    if full_size:
        return build_tdt_fixture(MODELS_DIR / "parakeet-tdt-0.6b-v2-random.nemo", PARAKEET_TDT_0_6B)
    return build_tdt_fixture(MODELS_DIR / "parakeet-tdt-tiny-v1.nemo", TINY)


def serve(servicer: TranscriptionServicer) -> ServiceHost:
    host = ServiceHost(
        [transcription_server.hosted_service(servicer)],
        ServerOptions(host="127.0.0.1", port=0, max_message_bytes=256 * 1024 * 1024, grace_s=1.0),
    )
    host.start()
    host.wait_until_warm(600)
    return host


def service_overhead(engine: TranscriptionEngine, stub: Any) -> Row:
    """1. Transcribe over gRPC (decode, batcher, merge, render included) / the engine on samples."""
    wav = wav_bytes(sweep(120.0, seed=1))
    samples = decode_bytes(wav).samples
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=wav), word_timestamps=True)
    stub.Transcribe(request, timeout=600)
    direct = best_of(lambda: engine.transcribe([samples]), 5)
    over_grpc = best_of(lambda: stub.Transcribe(request, timeout=600), 5)
    ratio = over_grpc / direct
    return Row(
        "1. gRPC Transcribe / engine in-process (2-min audio)",
        ratio,
        "ratio",
        "<= 1.05",
        ratio <= 1.05,
        {"grpc_s": over_grpc, "engine_s": direct},
    )


def runpod_vs_grpc(servicer: TranscriptionServicer, stub: Any) -> Row:
    """2. The RunPod JSON path (job JSON -> proto -> servicer -> JSON) / gRPC, 10 MB of base64 audio."""
    seconds = 10 * 1024 * 1024 * 3 / 4 / 32000  # 16-bit mono at 16 kHz: 32 kB per second
    wav = wav_bytes(sweep(seconds, seed=2))
    job_text = json.dumps({"id": "bench", "input": {"audio": base64.b64encode(wav).decode()}})
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=wav))

    def runpod_path() -> None:
        output = run_job(json.loads(job_text), transcription_pb2.TranscribeRequest, servicer.Transcribe)
        json.dumps(output)

    stub.Transcribe(request, timeout=600)
    grpc_s = best_of(lambda: stub.Transcribe(request, timeout=600), 5)
    runpod_s = best_of(runpod_path, 5)
    ratio = runpod_s / grpc_s
    return Row(
        f"2. RunPod JSON path / gRPC ({len(job_text) / 1e6:.1f} MB job)",
        ratio,
        "ratio",
        "<= 1.10",
        ratio <= 1.10,
        {"runpod_s": runpod_s, "grpc_s": grpc_s},
    )


def orchestrator_parallelism() -> Row:
    """3. Orchestrate wall time / the two backends called one after the other, backends of equal cost."""
    cost_s = 0.5

    def transcribe(request: Any, context: Any) -> transcription_pb2.TranscribeResponse:
        time.sleep(cost_s)
        return transcription_pb2.TranscribeResponse(text="x", duration=1.0)

    def diarize(request: Any, context: Any) -> diarization_pb2.DiarizeResponse:
        time.sleep(cost_s)
        return diarization_pb2.DiarizeResponse(num_speakers=1, duration=1.0)

    servicer = OrchestratorServicer(InProcessBackends(transcribe, diarize, lambda: None))
    request = orchestrator_pb2.OrchestrateRequest(
        audio=audio_pb2.Audio(uri="https://example.com/a.wav"), diarize=True
    )
    parallel = best_of(lambda: servicer.Orchestrate(request, JobContext(60)), 3)
    sequential = best_of(lambda: (transcribe(None, None), diarize(None, None)), 3)
    ratio = parallel / sequential
    return Row(
        "3. orchestrator parallel / sequential (equal backends)",
        ratio,
        "ratio",
        "<= 0.65",
        ratio <= 0.65,
        {"parallel_s": parallel, "sequential_s": sequential},
    )


LENGTH_SCRIPT = """
import json, sys, time
from pathlib import Path
from services.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from tests.audio_samples import sweep

def kb(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1])

engine = TranscriptionEngine(TranscriptionEngineConfig(model=sys.argv[1]))
engine.load(); engine.warm_up()
samples = sweep(float(sys.argv[2]), seed=3)
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
base = kb("VmRSS:")
started = time.perf_counter(); engine.transcribe([samples]); elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "peak_mb": kb("VmHWM:") / 1024, "base_mb": base / 1024}))
"""


def length_sweep(model: Path, lengths: list[float]) -> list[Row]:
    """4. Time and peak memory per audio second as recordings grow (one fresh process per length)."""
    rows = []
    for length in lengths:
        result = subprocess.run(
            [sys.executable, "-c", LENGTH_SCRIPT, str(model), str(length)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(
            Row(
                f"4. transcribe {length / 60:g} min: compute per audio second",
                figures["seconds"] / length * 1000,
                "ms/audio-s",
                detail=figures,
            )
        )
        rows.append(
            Row(
                f"4. transcribe {length / 60:g} min: peak RSS growth per audio minute",
                (figures["peak_mb"] - figures["base_mb"]) / (length / 60),
                "MB/audio-min",
                detail=figures,
            )
        )
    return rows


def batching_throughput(engine: TranscriptionEngine, clients: int = 16) -> Row:
    """5. Requests per second with 16 concurrent clients, micro-batching on / off."""
    clips = [sweep(10.0, seed=10 + i) for i in range(clients)]

    def throughput(policy: BatchPolicy) -> float:
        runner = TranscriptionRunner(engine, policy)
        runner.transcribe(clips[0], JobContext(600))
        barrier = threading.Barrier(clients)

        def call(clip: np.ndarray) -> None:
            barrier.wait()
            runner.transcribe(clip, JobContext(600))

        threads = [threading.Thread(target=call, args=(clip,)) for clip in clips]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        runner.close()
        return clients / elapsed

    batched = max(throughput(BatchPolicy(max_batch_size=clients, max_wait_ms=10.0)) for _ in range(2))
    single = max(throughput(BatchPolicy(max_batch_size=1, max_wait_ms=0.0)) for _ in range(2))
    return Row(
        f"5. throughput, {clients} concurrent clients: batching on / off",
        batched / single,
        "ratio",
        "> 1",
        batched > single,
        {"batched_rps": batched, "unbatched_rps": single},
    )


def cold_start(model: Path) -> Row:
    """6. Process start -> health SERVING, from a local model file."""
    from tests.conftest import VENV_BIN, free_port, wait_for_health

    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            str(VENV_BIN / "parakeet-server"),
            "transcription",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            str(model),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(f"127.0.0.1:{port}", "parakeet.v1.TranscriptionService", timeout=600)
        elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(30)
    return Row("6. cold start: process start -> SERVING", elapsed, "s")


def decode_speed() -> list[Row]:
    """7. PyAV decode + resample to 16 kHz mono, seconds of work per hour of 44.1 kHz stereo audio."""
    rows = []
    seconds = 120.0
    for container, codec in (("mp3", "libmp3lame"), ("flac", "flac"), ("wav", "pcm_s16le")):
        data = encode(sweep(seconds, seed=4, rate=44100), container, codec, 44100)
        elapsed = best_of(lambda data=data: decode_bytes(data), 3)
        rows.append(Row(f"7. decode {container} (44.1 kHz stereo)", elapsed * 3600 / seconds, "s/audio-hour"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="include 60-minute audio in the length sweep")
    parser.add_argument(
        "--full-size", action="store_true", help="parakeet-tdt-0.6b-v2-sized random-weight model"
    )
    args = parser.parse_args(argv)

    model = model_path(args.full_size)
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(model)))
    engine.load()
    engine.warm_up()
    servicer = TranscriptionServicer(
        TranscriptionRunner(engine, BatchPolicy(max_batch_size=16, max_wait_ms=10.0))
    )
    host = serve(servicer)
    channel = grpc.insecure_channel(
        host.address, options=[("grpc.max_send_message_length", 256 * 1024 * 1024)]
    )
    stub = transcription_pb2_grpc.TranscriptionServiceStub(channel)
    rows = [service_overhead(engine, stub), runpod_vs_grpc(servicer, stub), orchestrator_parallelism()]
    channel.close()
    host.drain(1.0)
    rows += length_sweep(model, [30.0, 120.0, 600.0] + ([3600.0] if args.full else []))
    rows.append(batching_throughput(engine))
    rows.append(cold_start(model))
    rows += decode_speed()
    report(rows, "full-size" if args.full_size else "cpu")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
