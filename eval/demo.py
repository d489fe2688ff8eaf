"""`make demo` (and `make demo-live`), first half: write a short synthesized 2-speaker conversation
and show its script.

The Makefile then transcribes the file with the `parakeet` CLI (trained fixture ASR + offline
diarization), so what a new user sees is the real command path, and the script printed here is
what the transcript should say.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from eval.synth import conversation, write_wav

DEMO_SEED = 7


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    live = "--live" in args
    args = [arg for arg in args if arg != "--live"]
    if len(args) != 1:
        print("usage: python -m eval.demo OUT.wav [--live]", file=sys.stderr)
        return 2
    out = Path(args[0])
    talk = conversation(DEMO_SEED, num_speakers=2, num_turns=6, overlap_probability=0.0, uri="demo")
    write_wav(out, talk.audio)
    print(f"A synthesized conversation ({talk.duration:.1f} s, espeak-ng voices), as scripted:\n")
    for turn in sorted(talk.turns, key=lambda turn: turn.start):
        print(f"  [{turn.start:5.2f}-{turn.end:5.2f}] {turn.speaker}: {turn.text}")
    command = f"stream {out.name} --diarize --realtime" if live else f"transcribe {out.name} --diarize"
    print(f"\nparakeet {command}  (tiny trained TDT + offline diarization):\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
