"""Load check of a gRPC TranscriptionService: N concurrent calls, none lost, none mixed up, and the
server's resident memory grows by less than 10 %.

    .venv/bin/python -m tests.reliability.load --requests 200

Loopback only. Without --address it starts its own `parakeet-server transcription` over the
fixture model (allowing at least N concurrent calls) and stops it at the end; with --address and
--pid it loads a running server (its --max-concurrent-requests must be at least N, or the
excess is refused and counted as lost). Bounded: every call has a deadline and the whole run a
time limit, after which it stops by itself.

Every request carries distinct audio (a different length, so a different `duration` and word
timings), whose expected answer comes from one sequential call first; every request also sends
its own x-request-id, which the server must echo. A warm-up round of N concurrent calls comes
before the first memory reading (VmRSS from /proc/PID/status), the measured round after it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from parakeet.v1 import audio_pb2, transcription_pb2, transcription_pb2_grpc
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import MODELS_DIR, start_server, stop_process

MAX_RSS_GROWTH = 0.10
REQUEST_ID_KEY = "x-request-id"


@dataclass
class LoadReport:
    """What a run found; `ok` when nothing was lost or mixed up and memory stayed put."""

    requests: int
    channels: int
    lost: int = 0
    mixed_up: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    rss_after_warm_up_kib: int = 0
    rss_after_load_kib: int = 0
    load_seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def rss_growth(self) -> float:
        if not self.rss_after_warm_up_kib:
            return float("inf")
        return (self.rss_after_load_kib - self.rss_after_warm_up_kib) / self.rss_after_warm_up_kib

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.mixed_up == 0 and self.rss_growth < MAX_RSS_GROWTH

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        lines = [
            f"{verdict}: {self.requests} concurrent Transcribe calls over {self.channels} channels "
            f"in {self.load_seconds:.1f} s",
            f"  lost: {self.lost} {self.failures or ''}",
            f"  mixed up: {self.mixed_up}",
            f"  server VmRSS: {self.rss_after_warm_up_kib / 1024:.1f} MiB after warm-up -> "
            f"{self.rss_after_load_kib / 1024:.1f} MiB after load ({self.rss_growth:+.1%}, limit "
            f"{MAX_RSS_GROWTH:.0%})",
        ]
        lines += [f"  e.g. {example}" for example in self.examples[:5]]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rss_growth": self.rss_growth, "ok": self.ok})


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def distinct_audio(count: int) -> list[bytes]:
    """WAV files of 0.5 s, 0.5125 s, 0.525 s, ...: no two have the same duration."""
    return [wav_bytes(sweep(0.5 + 0.0125 * index, seed=index)) for index in range(count)]


Answer = tuple[str, float, tuple[tuple[str, float, float], ...]]


def answer_of(response: transcription_pb2.TranscribeResponse) -> Answer:
    words = tuple((word.word, round(word.start, 3), round(word.end, 3)) for word in response.words)
    return response.text, round(response.duration, 4), words


def request_for(audio: bytes) -> transcription_pb2.TranscribeRequest:
    return transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=audio), word_timestamps=True)


def concurrent_round(
    stubs: list[transcription_pb2_grpc.TranscriptionServiceStub],
    audio: list[bytes],
    expected: list[Answer],
    label: str,
    deadline: float,
    report: LoadReport | None,
) -> None:
    """All requests at once (in random order); every answer checked against its own request's."""
    order = list(range(len(audio)))
    random.Random(label).shuffle(order)
    calls = []
    for position, index in enumerate(order):
        request_id = f"{label}-{index}"
        future = stubs[position % len(stubs)].Transcribe.future(
            request_for(audio[index]),
            timeout=max(1.0, deadline - time.monotonic()),
            metadata=((REQUEST_ID_KEY, request_id),),
        )
        calls.append((index, request_id, future))
    for index, request_id, future in calls:
        try:
            response = future.result()
        except grpc.RpcError as error:
            if report is not None:
                report.lost += 1
                name = error.code().name
                report.failures[name] = report.failures.get(name, 0) + 1
                report.examples.append(f"{request_id}: {name} {error.details()}")
            continue
        echoed = dict(future.trailing_metadata() or ()).get(REQUEST_ID_KEY)
        if report is not None and (answer_of(response) != expected[index] or echoed != request_id):
            report.mixed_up += 1
            report.examples.append(
                f"{request_id}: got duration {response.duration} and id {echoed!r}, "
                f"expected {expected[index][1]} and {request_id!r}"
            )


def run_load(
    address: str, pid: int, requests: int, time_limit_s: float = 300.0, channels: int = 4
) -> LoadReport:
    """The whole check against a SERVING server at `address` whose process is `pid`."""
    deadline = time.monotonic() + time_limit_s
    report = LoadReport(requests=requests, channels=channels)
    audio = distinct_audio(requests)
    opened = [grpc.insecure_channel(address) for _ in range(channels)]
    try:
        stubs = [transcription_pb2_grpc.TranscriptionServiceStub(channel) for channel in opened]
        expected = [answer_of(stubs[0].Transcribe(request_for(data), timeout=60)) for data in audio]
        if len(set(expected)) != len(expected):
            raise RuntimeError("the expected answers are not all distinct; mix-ups could go unseen")
        concurrent_round(stubs, audio, expected, "warm-up", deadline, None)
        report.rss_after_warm_up_kib = rss_kib(pid)
        started = time.monotonic()
        concurrent_round(stubs, audio, expected, "load", deadline, report)
        report.load_seconds = time.monotonic() - started
        report.rss_after_load_kib = rss_kib(pid)
    finally:
        for channel in opened:
            channel.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--requests", type=int, default=200, help="concurrent calls per round (default: 200)")
    parser.add_argument("--channels", type=int, default=4, help="gRPC channels to spread them over")
    parser.add_argument("--address", help="a running TranscriptionService on loopback (default: start one)")
    parser.add_argument("--pid", type=int, help="the process id behind --address, for its memory")
    parser.add_argument("--model", type=Path, default=MODELS_DIR / "parakeet-tdt-tiny-v1.nemo")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.requests > 2000:
        parser.error("--requests must be between 1 and 2000")
    if bool(args.address) != bool(args.pid):
        parser.error("--address and --pid go together")
    if args.address and not args.address.startswith(("127.0.0.1:", "localhost:")):
        parser.error("--address must be on loopback (127.0.0.1:PORT)")
    started = time.monotonic()
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    report: LoadReport | None = None
    address, pid = args.address, args.pid
    try:
        if address is None:
            log_path = Path(tempfile.gettempdir()) / f"parakeet-load-server-{os.getpid()}.log"
            print(f"starting parakeet-server transcription (log: {log_path})", file=sys.stderr)
            process, address = start_server(
                "transcription",
                *("--model", str(args.model), "--device", "cpu"),
                *("--max-concurrent-requests", str(max(64, args.requests))),
                log_path=log_path,
                env={"HF_HUB_OFFLINE": "1"},
                timeout=min(240.0, args.time_limit),
            )
            pid = process.pid
        remaining = args.time_limit - (time.monotonic() - started)
        report = run_load(address, pid, args.requests, remaining, args.channels)
    finally:
        if process is not None:
            stop_process(process, grace=30.0)
        if log_path is not None and report is not None and report.ok:
            log_path.unlink(missing_ok=True)  # kept only when something went wrong
    print(report.summary())
    print(f"RESULT {report.to_json()}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
