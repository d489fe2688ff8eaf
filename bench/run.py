"""`make bench`: the service's costs as ratios measured side by side in one run.

    python -m bench.run            # CPU-sized (tiny fixture model): a few minutes
    python -m bench.run --full     # adds 60-minute audio to the length sweep, 3 h to figure 8
    python -m bench.run --full-size  # parakeet-tdt-0.6b-v2-sized random-weight model (for a GPU)
    python -m bench.run --figures 1,8 --rss-hours 1   # some figures only

Every ratio is of two things measured here, in this process, on this machine, interleaved pair
by pair (bench.common.interleaved_ratio): the figure is the median of the per-pair ratios, printed
with their min-max. The table says which floor each figure must meet.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import batch, streaming
from bench.common import (
    Measure,
    Ratio,
    Row,
    best_of,
    interleaved_ratio,
    peak_rss_mb,
    report,
    start_server,
    stop_server,
    timed,
)
from eval.run import FIXTURE_MODEL as TRAINED_MODEL
from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    orchestrator_pb2,
    transcription_pb2,
    transcription_pb2_grpc,
)
from parakeet_server.core.audio import decode_bytes
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.grpc_server import ServerOptions, ServiceHost
from parakeet_server.core.runpod_shim import run_job
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import server as transcription_server
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.support.audio import encode, silent_flac, sweep, wav_bytes
from tests.support.servers import MODELS_DIR, REPO_ROOT


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


def ratio_row(name: str, ratio: Ratio, floor: str, passed: bool | None, a_name: str, b_name: str) -> Row:
    """A ratio figure: its median over the interleaved pairs, with their min-max beside it."""
    return Row(name, ratio.median, "ratio", floor, passed, ratio.detail(a_name, b_name), ratio.spread)


def service_overhead(engine: TranscriptionEngine, stub: Any, pairs: int) -> Row:
    """1. Transcribe over gRPC (decode, batcher, merge, render included) / the engine on samples."""
    wav = wav_bytes(sweep(120.0, seed=1))
    samples = decode_bytes(wav).samples
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=wav), word_timestamps=True)
    stub.Transcribe(request, timeout=600)
    ratio = interleaved_ratio(
        timed(lambda: stub.Transcribe(request, timeout=600)),
        timed(lambda: engine.transcribe([samples])),
        pairs,
    )
    return ratio_row(
        "1. gRPC Transcribe / engine in-process (2-min audio)",
        ratio,
        "<= 1.05",
        ratio.median <= 1.05,
        "grpc",
        "engine",
    )


def runpod_vs_grpc(servicer: TranscriptionServicer, stub: Any, pairs: int) -> Row:
    """2. The RunPod JSON path (job JSON -> proto -> servicer -> JSON) / gRPC, 10 MB of base64 audio."""
    seconds = 10 * 1024 * 1024 * 3 / 4 / 32000  # 16-bit mono at 16 kHz: 32 kB per second
    wav = wav_bytes(sweep(seconds, seed=2))
    job_text = json.dumps({"id": "bench", "input": {"audio": base64.b64encode(wav).decode()}})
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=wav))

    def runpod_path() -> None:
        output = run_job(json.loads(job_text), transcription_pb2.TranscribeRequest, servicer.Transcribe)
        json.dumps(output)

    stub.Transcribe(request, timeout=600)
    ratio = interleaved_ratio(timed(runpod_path), timed(lambda: stub.Transcribe(request, timeout=600)), pairs)
    return ratio_row(
        f"2. RunPod JSON path / gRPC ({len(job_text) / 1e6:.1f} MB job)",
        ratio,
        "<= 1.10",
        ratio.median <= 1.10,
        "runpod",
        "grpc",
    )


def orchestrator_parallelism(pairs: int) -> Row:
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
    ratio = interleaved_ratio(
        timed(lambda: servicer.Orchestrate(request, JobContext(60))),
        timed(lambda: (transcribe(None, None), diarize(None, None))),
        pairs,
    )
    return ratio_row(
        "3. orchestrator parallel / sequential (equal backends)",
        ratio,
        "<= 0.65",
        ratio.median <= 0.65,
        "parallel",
        "sequential",
    )


LENGTH_SCRIPT = """
import json, sys, time
from pathlib import Path
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from tests.support.audio import sweep

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


def batching_throughput(engine: TranscriptionEngine, pairs: int, clients: int = 16) -> Row:
    """5. Requests per second with 16 concurrent clients, micro-batching on / off."""
    clips = [sweep(10.0, seed=10 + i) for i in range(clients)]

    def burst(policy: BatchPolicy) -> Measure:
        """Seconds for `clients` concurrent requests through a fresh runner (warmed up untimed)."""

        def measure() -> float:
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
            return elapsed

        return measure

    # Unbatched time / batched time is batched throughput / unbatched throughput.
    ratio = interleaved_ratio(
        burst(BatchPolicy(max_batch_size=1, max_wait_ms=0.0)),
        burst(BatchPolicy(max_batch_size=clients, max_wait_ms=10.0)),
        pairs,
    )
    return ratio_row(
        f"5. throughput, {clients} concurrent clients: batching on / off",
        ratio,
        "> 1",
        ratio.median > 1,
        "unbatched",
        "batched",
    )


def cold_start(model: Path) -> Row:
    """6. Process start -> health SERVING, from a local model file."""
    started = time.perf_counter()
    process, _ = start_server("transcription", "--model", str(model))
    elapsed = time.perf_counter() - started
    stop_server(process)
    return Row("6. cold start: process start -> SERVING", elapsed, "s")


RSS_FLOOR_GB = 4.0


def server_peak_rss(model: Path, hours: list[float]) -> list[Row]:
    """8. Peak RSS (VmHWM) of a `parakeet-server transcription` process after transcribing silent
    FLAC of each length in turn, shortest first: the peak since start, model load included.

    Once a length misses the floor, longer ones are not sent: memory that grows with the length
    would only grow further, and on a small machine the kernel would kill the server (or worse).
    """
    process, address = start_server("transcription", "--model", str(model))
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 256 * 1024 * 1024)])
    stub = transcription_pb2_grpc.TranscriptionServiceStub(channel)
    rows = []
    missed = ""
    try:
        for length in sorted(hours):
            name = f"8. transcription server, {length:g} h audio"
            if missed:
                rows.append(
                    Row(
                        f"{name}: peak RSS",
                        math.nan,
                        "GB",
                        f"<= {RSS_FLOOR_GB:g}",
                        False,
                        {"skipped": missed},
                    )
                )
                continue
            flac = silent_flac(length * 3600)
            request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=flac, format="flac"))
            started = time.perf_counter()
            stub.Transcribe(request, timeout=3600)
            elapsed = time.perf_counter() - started
            peak_gb = peak_rss_mb(process.pid) / 1024
            detail = {"transcribe_s": elapsed, "flac_bytes": len(flac), "model": model.name}
            rows.append(
                Row(
                    f"{name}: peak RSS",
                    peak_gb,
                    "GB",
                    f"<= {RSS_FLOOR_GB:g}",
                    peak_gb <= RSS_FLOOR_GB,
                    detail,
                )
            )
            rows.append(Row(f"{name}: Transcribe wall time", elapsed, "s", detail=detail))
            if peak_gb > RSS_FLOOR_GB:
                missed = f"not sent: {length:g} h already peaked at {peak_gb:.2f} GB"
    finally:
        channel.close()
        stop_server(process)
    return rows


def decode_speed() -> list[Row]:
    """7. PyAV decode + resample to 16 kHz mono, seconds of work per hour of 44.1 kHz stereo audio."""
    rows = []
    seconds = 120.0
    for container, codec in (("mp3", "libmp3lame"), ("flac", "flac"), ("wav", "pcm_s16le")):
        data = encode(sweep(seconds, seed=4, rate=44100), container, codec, 44100)
        elapsed = best_of(functools.partial(decode_bytes, data), 3)
        rows.append(Row(f"7. decode {container} (44.1 kHz stereo)", elapsed * 3600 / seconds, "s/audio-hour"))
    return rows


FIGURES = range(1, 13)  # 9-11: live streaming (bench/streaming.py); 12: parakeet batch (bench/batch.py)


def figure_list(text: str) -> set[int]:
    chosen = {int(part) for part in text.split(",") if part.strip()}
    if not chosen <= set(FIGURES):
        raise argparse.ArgumentTypeError(f"figures are numbered {FIGURES[0]}-{FIGURES[-1]}")
    return chosen


def hours_list(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full", action="store_true", help="add 60-minute audio to the length sweep and 3 h to figure 8"
    )
    parser.add_argument(
        "--full-size", action="store_true", help="parakeet-tdt-0.6b-v2-sized random-weight model"
    )
    parser.add_argument(
        "--figures",
        type=figure_list,
        default=set(FIGURES),
        help="only these figures, e.g. 1,2,8 (default: all)",
    )
    parser.add_argument(
        "--pairs", type=int, default=7, help="interleaved pairs per ratio figure (default: %(default)s)"
    )
    parser.add_argument(
        "--rss-hours",
        type=hours_list,
        default=None,
        help="audio lengths of figure 8, hours (default: 1; 1,3 with --full)",
    )
    args = parser.parse_args(argv)
    figures: set[int] = args.figures

    # Figure 8 alone needs no fixture model on CPU (it serves the trained one).
    model = (
        model_path(args.full_size)
        if args.full_size or figures - {8} - streaming.STREAMING_FIGURES - batch.BATCH_FIGURES
        else TRAINED_MODEL
    )
    rows: list[Row] = []
    if figures & {1, 2, 3, 5}:
        engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(model)))
        engine.load()
        engine.warm_up()
    if figures & {1, 2}:
        servicer = TranscriptionServicer(
            TranscriptionRunner(engine, BatchPolicy(max_batch_size=16, max_wait_ms=10.0))
        )
        host = serve(servicer)
        channel = grpc.insecure_channel(
            host.address, options=[("grpc.max_send_message_length", 256 * 1024 * 1024)]
        )
        stub = transcription_pb2_grpc.TranscriptionServiceStub(channel)
        if 1 in figures:
            rows.append(service_overhead(engine, stub, args.pairs))
        if 2 in figures:
            rows.append(runpod_vs_grpc(servicer, stub, args.pairs))
        channel.close()
        host.drain(1.0)
    if 3 in figures:
        rows.append(orchestrator_parallelism(args.pairs))
    if 4 in figures:
        rows += length_sweep(model, [30.0, 120.0, 600.0] + ([3600.0] if args.full else []))
    if 5 in figures:
        rows.append(batching_throughput(engine, args.pairs))
    if 6 in figures:
        rows.append(cold_start(model))
    if 7 in figures:
        rows += decode_speed()
    if 8 in figures:
        hours = args.rss_hours or ([1.0, 3.0] if args.full else [1.0])
        rows += server_peak_rss(model if args.full_size else TRAINED_MODEL, hours)
    if figures & streaming.STREAMING_FIGURES:
        rows += streaming.figures(figures)
    if figures & batch.BATCH_FIGURES:
        rows += batch.figures(pairs=min(args.pairs, 3))
    report(rows, "full-size" if args.full_size else "cpu")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
