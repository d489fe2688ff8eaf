"""A batch archive for `parakeet batch` tests: short synthesized utterances plus three corrupt files.

`build_batch_corpus(root)` writes `count` files under `root` (deterministic, espeak-ng): all but
three are WAVs of a few words from eval.synth's vocabulary, spread over two subdirectories (so a
directory input keeps a layout) with one stem used in both (a key clash); the three corrupt ones
are a truncated WAV (cut inside its header), a text file named .wav, and an empty .wav. The
`batch_corpus` fixture in tests/batch/conftest.py builds it once per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eval import synth

SEED = 20
# relative path -> the reason the orchestrator gives for it
CORRUPT: dict[str, str] = {
    "broken/truncated.wav": "AUDIO_UNDECODABLE",
    "broken/not_audio.wav": "AUDIO_UNDECODABLE",
    "broken/empty.wav": "AUDIO_MISSING",
}


@dataclass(frozen=True)
class BatchCorpus:
    """Where the files are and what is in them (paths relative to `root`, POSIX)."""

    root: Path
    texts: dict[str, str]  # good file -> the words spoken in it
    corrupt: dict[str, str]  # corrupt file -> the reason it fails with

    @property
    def files(self) -> list[str]:
        """Every file, sorted as a directory walk lists them."""
        return sorted([*self.texts, *self.corrupt])

    def paths(self, names: list[str] | None = None) -> list[Path]:
        return [self.root / name for name in (names if names is not None else self.files)]

    def subset(self, good: int, corrupt: bool = True) -> list[str]:
        """The first `good` good files (and the corrupt ones), for the quicker tests."""
        return sorted([*sorted(self.texts)[:good], *(self.corrupt if corrupt else [])])


def build_batch_corpus(root: Path, count: int = 100, seed: int = SEED) -> BatchCorpus:
    """Write the corpus under `root` (which may exist) and describe it."""
    good = count - len(CORRUPT)
    texts = synth.sentences(seed, good, min_words=2, max_words=4)
    voices = [synth.VOICES[index % len(synth.VOICES)] for index in range(good)]
    audio = synth._synthesize_all(list(zip(texts, voices, strict=True)))
    names: dict[str, str] = {}
    for index, (text, samples) in enumerate(zip(texts, audio, strict=True)):
        folder = "set_a" if index % 2 == 0 else "set_b"
        # One stem in both folders (a clash for plain file inputs, not for a directory input).
        stem = "same_name" if index in (0, 1) else f"clip_{index:03d}"
        name = f"{folder}/{stem}.wav"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synth.write_wav(path, samples)
        names[name] = text
    broken = root / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    whole = (root / next(iter(names))).read_bytes()
    (broken / "truncated.wav").write_bytes(whole[:30])
    (broken / "not_audio.wav").write_text("this is not audio, just some text\n" * 20)
    (broken / "empty.wav").write_bytes(b"")
    return BatchCorpus(root, names, dict(CORRUPT))
