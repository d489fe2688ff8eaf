"""A deterministic synthesized speech corpus (Debian's `espeak-ng`) with exact references.

Why: accuracy tests need real speech with known words and known speaker turns, offline and in
seconds. eSpeak NG is a formant synthesizer: given the same text, voice, rate and pitch it writes
the same samples every time, so a seed fixes the whole corpus (text, voices, timing, audio).
Its voices (accents x gender/timbre variants x pitch) are distinct enough for a speaker-embedding
model to separate, and each utterance is trimmed to its speech, so conversation turn bounds, the
reference RTTM and the word order are exact by construction rather than hand-labelled.

    python -m eval.synth --out DIR --seed 0 --sentences 100 --conversations 5

writes `DIR/sentences/*.wav`, `DIR/conversations/*.{wav,rttm,json}` and a NeMo-style
`DIR/manifest.jsonl` (`audio_filepath`, `text`, `duration`; conversations add `uri`,
`rttm_filepath` and `words_filepath`, the references eval/run.py scores against).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import wave
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE, decode_bytes

ESPEAK = "espeak-ng"
PEAK = 0.6  # every utterance's peak amplitude: headroom for two overlapping turns

Audio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak voice with its variant (`en-us+m3`), rate (wpm) and pitch (0-99)."""

    name: str
    rate: int
    pitch: int

    @property
    def label(self) -> str:
        """A file- and RTTM-safe name that also records rate and pitch."""
        return f"{self.name.replace('+', '_')}_r{self.rate}_p{self.pitch}"


# Ten speakers that differ in accent, gender/timbre variant and pitch, so that any two picked for a
# conversation are easy to tell apart. Rates stay in 140-190 wpm: slower is unnatural, faster
# slurs the short function words.
VOICES: tuple[Voice, ...] = (
    Voice("en-us+m3", 160, 35),
    Voice("en-gb+f3", 170, 70),
    Voice("en-gb-scotland+m1", 150, 25),
    Voice("en-029+f1", 180, 60),
    Voice("en-us+f5", 155, 75),
    Voice("en-gb+m7", 185, 45),
    Voice("en-us-nyc+m5", 175, 30),
    Voice("en-gb-x-rp+f2", 145, 65),
    Voice("en-gb-x-gbclan+m2", 165, 55),
    Voice("en-us+f4", 190, 50),
)

# A closed vocabulary of common words. Homophones (to/two, for/four, no/know, one/won, eight/ate,
# read/red, ...) and one-letter words are left out: a recognizer cannot tell them apart from
# audio alone, and they would put a floor under the word error rate that says nothing about it.
VOCABULARY: tuple[str, ...] = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world",
    "speech", "model", "test", "three", "five", "six", "seven", "nine", "ten", "yes",
    "good", "morning", "evening", "thank", "you", "please", "call", "back", "later", "today",
    "tomorrow", "water", "green", "house", "table", "window", "river", "mountain", "happy", "little",
    "big", "city", "music", "paper", "garden", "yellow", "purple", "orange", "coffee", "friend",
    "teacher", "doctor", "computer", "number", "market", "summer", "winter", "kitchen", "station", "letter",
    "family", "sister", "brother", "mother", "father", "money", "street", "island", "forest", "dinner",
    "breakfast", "open", "close", "start", "stop", "sing", "walk", "bright", "dark", "cold",
    "warm", "fast", "slow", "early", "rain", "snow", "wind", "light", "heavy", "bread",
    "cheese", "apple", "banana", "chair", "phone", "picture", "travel", "question", "answer", "quiet",
)  # fmt: skip


def sentences(
    seed: int, count: int, min_words: int = 3, max_words: int = 8, exclude: Collection[str] = ()
) -> list[str]:
    """`count` distinct random word orders from VOCABULARY (lower-case, no punctuation).

    Random orders rather than real sentences: a model cannot lean on a language model to guess
    words, so its accuracy measures what it heard. A held-out split uses another seed and passes
    the training sentences as `exclude`, so no test sentence was seen in training.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = random.Random(seed)
    excluded = set(exclude)
    chosen: dict[str, None] = {}
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct sentences of {min_words}-{max_words} words")
        text = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(min_words, max_words)))
        if text not in excluded:
            chosen[text] = None
    return list(chosen)


def trim(audio: Audio, threshold: float = 0.01) -> Audio:
    """`audio` without leading and trailing silence (samples below `threshold` x its peak).

    espeak pads its output with silence (most of it at the end); trimming makes an utterance's
    first and last samples its speech bounds, which is what reference turn times must be.
    """
    if audio.size == 0:
        return audio
    loud = np.flatnonzero(np.abs(audio) > threshold * float(np.abs(audio).max()))
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] : loud[-1] + 1]


def synthesize(text: str, voice: Voice) -> Audio:
    """`text` spoken by `voice`: 16 kHz mono float32, trimmed to the speech.

    espeak writes a 22.05 kHz WAV to stdout; the service's own PyAV decoder resamples it, so the
    corpus goes through the same resampler as a request would. The peak is set to PEAK: espeak's
    levels differ by voice (some reach full scale), and overlapped turns are summed.
    """
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(f"{ESPEAK} is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    result = subprocess.run(
        [ESPEAK, "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    )
    audio = trim(decode_bytes(result.stdout, "wav").samples).astype(np.float32, copy=True)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.0:
        audio *= np.float32(PEAK / peak)
    return audio


@dataclass
class Utterance:
    """One synthesized sentence and what was said in it."""

    text: str
    voice: Voice
    audio: Audio

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _synthesize_all(jobs: Sequence[tuple[str, Voice]], workers: int = 4) -> list[Audio]:
    """Synthesize in a few threads: the time is spent in espeak subprocesses, not in Python."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: synthesize(*job), jobs))


def sentence_corpus(
    seed: int, count: int, voices: Sequence[Voice] = VOICES, exclude: Collection[str] = ()
) -> list[Utterance]:
    """`count` sentences (see `sentences`), each spoken by a voice drawn from `voices` with `seed`.

    A held-out split passes the training split's texts as `exclude`.
    """
    if not voices:
        raise ValueError("need at least one voice")
    texts = sentences(seed, count, exclude=exclude)
    rng = random.Random(seed ^ 0x5EED)
    assigned = [voices[rng.randrange(len(voices))] for _ in texts]
    audio = _synthesize_all(list(zip(texts, assigned, strict=True)))
    return [Utterance(t, v, a) for t, v, a in zip(texts, assigned, audio, strict=True)]


@dataclass
class RefTurn:
    """One reference speaker turn: who spoke, when (seconds, exact speech bounds) and what."""

    speaker: str
    start: float
    end: float
    text: str


@dataclass
class Conversation:
    """A mixed multi-speaker recording and its exact reference turns."""

    audio: Audio
    turns: list[RefTurn]
    uri: str
    voices: dict[str, Voice] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def _ordered(self) -> list[RefTurn]:
        return sorted(self.turns, key=lambda turn: (turn.start, turn.end))

    def rttm(self) -> str:
        """The reference as RTTM, the format diarization scorers (pyannote.metrics, dscore) read."""
        return "".join(
            f"SPEAKER {self.uri} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> {turn.speaker} <NA> <NA>\n"
            for turn in self._ordered()
        )

    def words(self) -> list[tuple[str, str]]:
        """(word, speaker) in time order: turns by start time, words in order within a turn."""
        return [(word, turn.speaker) for turn in self._ordered() for word in turn.text.split()]

    def transcript(self) -> str:
        """Every word, turns in start order: the reference for speaker-agnostic WER."""
        return " ".join(turn.text for turn in self._ordered())


def conversation(
    seed: int,
    num_speakers: int,
    num_turns: int,
    overlap_probability: float = 0.15,
    voices: Sequence[Voice] = VOICES,
    uri: str | None = None,
) -> Conversation:
    """A seeded conversation: `num_turns` turns by `num_speakers` distinct voices.

    Consecutive turns are by different speakers and every speaker talks at least once. A turn
    starts 0.2-0.8 s after the previous speech ends or, with `overlap_probability`, 0.1-0.5 s
    before it ends (overlapped speech, mixed by summation and clipped to [-1, 1]). Turn bounds
    are the trimmed utterances' first and last samples, so the reference is exact.
    """
    if not 2 <= num_speakers <= min(4, len(voices)):
        raise ValueError(f"num_speakers must be 2-{min(4, len(voices))}, got {num_speakers}")
    if num_turns < num_speakers:
        raise ValueError(f"need at least one turn per speaker ({num_speakers}), got {num_turns}")
    rng = random.Random(seed)
    picked = rng.sample(list(voices), num_speakers)
    speakers = {f"spk{index}": voice for index, voice in enumerate(picked)}
    names = list(speakers)

    order = rng.sample(names, num_speakers)  # everyone speaks once first
    while len(order) < num_turns:
        order.append(rng.choice([name for name in names if name != order[-1]]))
    texts = sentences(rng.randrange(2**31), num_turns, min_words=4, max_words=10)
    clips = _synthesize_all([(text, speakers[name]) for text, name in zip(texts, order, strict=True)])

    lead = int(rng.uniform(0.3, 0.8) * SAMPLE_RATE)
    placed: list[tuple[str, int, int, str]] = []  # speaker, start sample, end sample, text
    speech_end = lead
    for index, (name, text, clip) in enumerate(zip(order, texts, clips, strict=True)):
        if index == 0:
            start = lead
        elif rng.random() < overlap_probability:
            start = speech_end - int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
            previous_start = placed[-1][1]
            own_end = max((end for who, _, end, _ in placed if who == name), default=0)
            start = max(start, previous_start + SAMPLE_RATE // 4, own_end + SAMPLE_RATE // 10)
        else:
            start = speech_end + int(rng.uniform(0.2, 0.8) * SAMPLE_RATE)
        placed.append((name, start, start + len(clip), text))
        speech_end = max(speech_end, start + len(clip))

    tail = int(rng.uniform(0.3, 0.8) * SAMPLE_RATE)
    mix = np.zeros(speech_end + tail, dtype=np.float32)
    for (_, start, end, _), clip in zip(placed, clips, strict=True):
        mix[start:end] += clip
    np.clip(mix, -1.0, 1.0, out=mix)
    turns = [RefTurn(name, start / SAMPLE_RATE, end / SAMPLE_RATE, text) for name, start, end, text in placed]
    return Conversation(mix, turns, uri if uri is not None else f"synth_{seed}", speakers)


def write_wav(path: Path | str, audio: Audio, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV: what every tool (NeMo manifests, pyannote, sox) reads."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.tobytes())


def write_corpus(
    out: Path,
    seed: int,
    num_sentences: int,
    num_conversations: int,
    num_speakers: int = 2,
    num_turns: int = 8,
    overlap_probability: float = 0.15,
) -> Path:
    """Write sentences, conversations and their references under `out`; return the manifest path."""
    sentence_dir, conversation_dir = out / "sentences", out / "conversations"
    sentence_dir.mkdir(parents=True, exist_ok=True)
    conversation_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    for index, utterance in enumerate(sentence_corpus(seed, num_sentences)):
        path = sentence_dir / f"sentence_{index:05d}.wav"
        write_wav(path, utterance.audio)
        entries.append(
            {
                "audio_filepath": str(path),
                "text": utterance.text,
                "duration": round(utterance.duration, 4),
                "voice": utterance.voice.label,
            }
        )
    for index in range(num_conversations):
        uri = f"conversation_{index:03d}"
        talk = conversation(
            seed * 1000 + index, num_speakers, num_turns, overlap_probability=overlap_probability, uri=uri
        )
        wav = conversation_dir / f"{uri}.wav"
        write_wav(wav, talk.audio)
        (conversation_dir / f"{uri}.rttm").write_text(talk.rttm())
        reference = {
            "uri": uri,
            "duration": talk.duration,
            "transcript": talk.transcript(),
            "words": [{"word": word, "speaker": speaker} for word, speaker in talk.words()],
            "turns": [vars(turn) for turn in talk.turns],
            "voices": {name: vars(voice) for name, voice in talk.voices.items()},
        }
        (conversation_dir / f"{uri}.json").write_text(json.dumps(reference, indent=1) + "\n")
        entries.append(
            {
                "audio_filepath": str(wav),
                "text": talk.transcript(),
                "duration": round(talk.duration, 4),
                "uri": uri,
                "rttm_filepath": str(conversation_dir / f"{uri}.rttm"),
                "words_filepath": str(conversation_dir / f"{uri}.json"),
            }
        )
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=100, help="single-speaker sentences")
    parser.add_argument("--conversations", type=int, default=0, help="multi-speaker conversations")
    parser.add_argument("--speakers", type=int, default=2, help="speakers per conversation (2-4)")
    parser.add_argument("--turns", type=int, default=8, help="turns per conversation")
    parser.add_argument("--overlap", type=float, default=0.15, help="probability a turn overlaps")
    args = parser.parse_args(argv)
    manifest = write_corpus(
        args.out, args.seed, args.sentences, args.conversations, args.speakers, args.turns, args.overlap
    )
    print(manifest)


if __name__ == "__main__":
    main()
