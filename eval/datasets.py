"""Manifests for the public sets published numbers are quoted on, from their usual on-disk layout.

`python -m eval.datasets librispeech LibriSpeech/test-clean -o test-clean.jsonl` reads
the `*.trans.txt` files (one `ID TEXT` line per utterance, audio `ID.flac` beside it);
`python -m eval.datasets rttm AUDIO_DIR RTTM_DIR -o voxconverse-test.jsonl` pairs each
`NAME.rttm` with `NAME.{wav,flac,mp3,...}` (VoxConverse, AMI's only_words RTTMs, DIHARD). The
data itself is downloaded by whoever runs it; nothing here reaches the network. `--condition NAME`
labels every entry (AMI's `ami-sdm` vs `ami-ihm`), so the report splits its rows by it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".sph")


def librispeech(root: Path) -> Iterator[dict[str, str]]:
    """Entries for every utterance under `root` (a split folder such as test-clean)."""
    for transcript in sorted(root.rglob("*.trans.txt")):
        for line in transcript.read_text().splitlines():
            if not line.strip():
                continue
            utterance, _, text = line.partition(" ")
            audio = transcript.parent / f"{utterance}.flac"
            if not audio.exists():
                raise FileNotFoundError(f"{transcript} lists {utterance}, but {audio} is missing")
            yield {"audio_filepath": str(audio.resolve()), "text": text.strip().lower(), "uri": utterance}


def rttm_set(audio_dir: Path, rttm_dir: Path) -> Iterator[dict[str, str]]:
    """Entries pairing each RTTM with the audio file of the same name."""
    rttms = sorted(rttm_dir.glob("*.rttm"))
    if not rttms:
        raise FileNotFoundError(f"no .rttm files in {rttm_dir}")
    for rttm in rttms:
        matches = [audio_dir / f"{rttm.stem}{suffix}" for suffix in AUDIO_SUFFIXES]
        audio = next((path for path in matches if path.exists()), None)
        if audio is None:
            raise FileNotFoundError(
                f"no audio for {rttm.name} in {audio_dir} (looked for {rttm.stem}.wav, ...)"
            )
        yield {"audio_filepath": str(audio.resolve()), "rttm_filepath": str(rttm.resolve()), "uri": rttm.stem}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.datasets", description=__doc__.split("\n\n")[0])
    sets = parser.add_subparsers(dest="set", required=True)
    libri = sets.add_parser("librispeech", help="a LibriSpeech split folder")
    libri.add_argument("root", type=Path)
    diarization = sets.add_parser("rttm", help="audio + RTTM folders (VoxConverse, AMI, DIHARD)")
    diarization.add_argument("audio_dir", type=Path)
    diarization.add_argument("rttm_dir", type=Path)
    for sub in (libri, diarization):
        sub.add_argument("-o", "--output", type=Path, required=True, help="manifest to write")
        sub.add_argument(
            "--condition",
            default="",
            metavar="NAME",
            help="label every entry with this condition (a row of `python -m eval`'s by-condition table)",
        )
    args = parser.parse_args(argv)
    entries: list[dict[str, str]] = list(
        librispeech(args.root) if args.set == "librispeech" else rttm_set(args.audio_dir, args.rttm_dir)
    )
    if args.condition:
        entries = [{**entry, "condition": args.condition} for entry in entries]
    args.output.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    print(f"{args.output}: {len(entries)} recordings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
