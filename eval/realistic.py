"""A realistic synthesized corpus: natural variation, rooms, noise, channels and messy turn-taking.

Why: the clean corpus (eval/synth.py) gives each speaker one fixed pitch and rate, no room and no
noise, so a diarizer can count speakers by pitch and look better than it is on real recordings.
This corpus keeps the exact references (every utterance's dry speech bounds and words) but makes
the audio harder in the ways real recordings are:

* within-speaker variation: each utterance draws its own rate (±15 % of the speaker's) and pitch
  (±15 of the speaker's, espeak's 0-99 scale), so one voice is not one pitch;
* turn-taking: 10-20 % overlapped speech, back-channels under 1 s ("yes", "thank you") spoken
  over the other speaker, long monologues with pauses, 1-6 speakers, 1-10 minutes;
* rooms and channels (the `Condition`): synthetic reverberation (a room size per condition and
  a position per speaker), white/pink/babble noise at 5-30 dB SNR, level differences between
  speakers (±5 dB each, so up to 10 dB apart), telephone band (8 kHz, mu-law) and mp3/opus
  round-trips at low bitrates (PyAV, the service's own decoder reads them back).

Splits are by seed and by voice: `dev` (tuning) and `test` (held out) draw from disjoint seed
ranges; `UNSEEN_VOICES` share no espeak variant+accent pair with eval.synth.VOICES (the tiny TDT's
training voices), so a WER on them measures generalisation. Everything is deterministic from
(split, index); `write_set` caches the rendered files under a directory keyed by those.

    python -m eval.realistic --out DIR --split dev --conversations 12
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from eval.synth import VOICES, Audio, Conversation, RefTurn, Voice, _synthesize_all, sentences, write_wav
from parakeet_server.core.audio import SAMPLE_RATE, decode_bytes

SPLIT_SEEDS = {"dev": 500_000, "test": 600_000}

# Voices the tiny TDT never heard: other variants of the same accents (and two accents it lacks).
UNSEEN_VOICES: tuple[Voice, ...] = (
    Voice("en-us+m1", 165, 40),
    Voice("en-gb+f4", 160, 72),
    Voice("en-gb-x-rp+m4", 150, 35),
    Voice("en-us-nyc+f2", 175, 68),
    Voice("en-029+m6", 170, 30),
    Voice("en-gb-scotland+f3", 155, 62),
    Voice("en-gb-x-gbcwmd+m2", 160, 45),
    Voice("en-us+f1", 185, 58),
    Voice("en-gb-x-gbclan+f5", 150, 70),
    Voice("en-gb+m6", 170, 28),
    Voice("en-us+m8", 155, 50),
    Voice("en-gb-x-rp+f3", 180, 66),
)

# Short turns spoken over or between the other speakers' turns; words from the clean vocabulary.
BACKCHANNELS = ("yes", "thank you", "good", "yes please", "hello", "okay")
# Babble: a murmur of voices that are never conversation speakers (no speaker label to score).
BABBLE_VOICES: tuple[Voice, ...] = (
    Voice("en-gb-x-rp+m3", 170, 40),
    Voice("en-us+f2", 175, 60),
    Voice("en-029+m2", 160, 35),
    Voice("en-gb+f1", 165, 65),
)


@dataclass(frozen=True)
class Condition:
    """How a conversation's audio is degraded after mixing; `name` labels report rows."""

    name: str
    rt60_s: float = 0.0  # reverberation time of a synthetic room; 0: dry
    noise: str = ""  # "", "white", "pink" or "babble"
    snr_db: tuple[float, float] = (30.0, 30.0)  # drawn per conversation
    level_db: float = 0.0  # each speaker's gain is drawn in [-level_db, +level_db]
    telephone: bool = False  # 8 kHz, 300-3400 Hz, mu-law
    codec: str = ""  # "", "mp3" or "opus" round-trip
    bitrate: int = 0


CONDITIONS: tuple[Condition, ...] = (
    Condition("varied"),  # within-speaker variation and messy turns only
    Condition("room", rt60_s=0.5, level_db=5.0),
    Condition("noisy", noise="pink", snr_db=(5.0, 20.0), level_db=5.0),
    Condition("babble", noise="babble", snr_db=(10.0, 25.0)),
    Condition("telephone", noise="white", snr_db=(20.0, 30.0), telephone=True, level_db=5.0),
    Condition("mp3", rt60_s=0.3, codec="mp3", bitrate=32_000, level_db=5.0),
    Condition("opus", noise="white", snr_db=(15.0, 30.0), codec="opus", bitrate=16_000),
    Condition(
        "hard", rt60_s=0.8, noise="babble", snr_db=(5.0, 15.0), level_db=5.0, codec="opus", bitrate=16_000
    ),
)
BY_NAME = {condition.name: condition for condition in CONDITIONS}


@dataclass(frozen=True)
class Spec:
    """What one realistic conversation is: its speakers, length and condition."""

    uri: str
    seed: int
    num_speakers: int
    minutes: float
    condition: Condition
    overlap: float = 0.15  # target share of speech time spoken over someone else


def spec(split: str, index: int, max_speakers: int = 6, max_minutes: float = 10.0) -> Spec:
    """The `index`-th conversation of `split`: speaker count 1..max_speakers and condition cycle
    through their ranges (every split covers them all), length 1..max_minutes drawn from the seed."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_SEEDS)}, got {split!r}")
    seed = SPLIT_SEEDS[split] + index
    rng = random.Random(seed)
    speakers = 1 + index % max_speakers
    condition = CONDITIONS[(index // max_speakers + index) % len(CONDITIONS)]
    minutes = round(rng.uniform(1.0, max(1.0, max_minutes)), 2)
    return Spec(f"{split}_{index:03d}_{speakers}spk_{condition.name}", seed, speakers, minutes, condition)


def _vary(voice: Voice, rng: random.Random) -> Voice:
    """One utterance's voice: rate within ±15 % and pitch within ±15 of the speaker's."""
    rate = round(voice.rate * rng.uniform(0.85, 1.15))
    pitch = min(99, max(0, voice.pitch + rng.randint(-15, 15)))
    return replace(voice, rate=rate, pitch=pitch)


@dataclass
class _Line:
    speaker: str
    text: str
    kind: str  # "turn", "monologue" or "backchannel"


def _script(rng: random.Random, names: Sequence[str], seconds: float) -> list[_Line]:
    """Who says what, in order, until about `seconds` of speech (~0.42 s per word at 150 wpm)."""
    lines: list[_Line] = []
    spoken = 0.0
    previous = ""
    pool = iter(sentences(rng.randrange(2**31), 1000, min_words=4, max_words=12))
    waiting = list(names)  # everyone takes a real turn before the script repeats anyone
    while spoken < seconds or waiting:
        others = [name for name in names if name != previous] or list(names)
        roll = rng.random()
        if waiting:
            who = waiting.pop(0)
        elif len(names) > 1 and roll < 0.15:
            lines.append(_Line(rng.choice(others), rng.choice(BACKCHANNELS), "backchannel"))
            spoken += 0.5
            continue
        else:
            who = rng.choice(others)
        count = rng.randint(3, 6) if roll > 0.85 or len(names) == 1 else rng.randint(1, 2)
        for _ in range(count):
            text = next(pool)
            lines.append(_Line(who, text, "monologue" if count > 2 else "turn"))
            spoken += 0.42 * len(text.split())
        previous = who
    return lines


def _room(rng: np.random.Generator, rt60_s: float) -> Audio:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise."""
    length = int(rt60_s * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # the first reflections arrive after the direct sound
    response = 0.6 * tail / np.sqrt(np.sum(tail**2))
    response[0] = 1.0
    return np.asarray(response, dtype=np.float32)


def _noise(kind: str, length: int, rng: np.random.Generator, split_seed: int) -> Audio:
    if kind == "white":
        return rng.standard_normal(length).astype(np.float32)
    if kind == "pink":  # 1/f power: shape white noise's spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(rng.standard_normal(length))
        spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(length), 1.0 / length))
        return np.fft.irfft(spectrum, length).astype(np.float32)
    if kind == "babble":
        return _babble(length, random.Random(split_seed))
    raise ValueError(f"unknown noise {kind!r}")


def _babble(length: int, rng: random.Random) -> Audio:
    """Four background voices talking continuously and at once."""
    result = np.zeros(length, dtype=np.float32)
    for voice in BABBLE_VOICES:
        texts = sentences(rng.randrange(2**31), max(2, length // (3 * SAMPLE_RATE) + 2), 6, 12)
        clips = _synthesize_all([(text, _vary(voice, rng)) for text in texts])
        stream = np.concatenate(clips)
        offset = rng.randrange(max(1, stream.size - length)) if stream.size > length else 0
        piece = stream[offset : offset + length]
        result[: piece.size] += piece
    return result


def _telephone(audio: Audio) -> Audio:
    """8 kHz, 300-3400 Hz band, 8-bit mu-law, back to 16 kHz."""
    from scipy.signal import butter, resample_poly, sosfilt

    narrow = resample_poly(audio, 1, 2)
    narrow = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
    mu = 255.0
    peak = max(float(np.abs(narrow).max()), 1e-9)
    companded = np.sign(narrow) * np.log1p(mu * np.abs(narrow / peak)) / np.log1p(mu)
    quantised = np.round(companded * 127.0) / 127.0
    restored = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu * peak
    return np.asarray(resample_poly(restored, 2, 1), dtype=np.float32)[: audio.size]


def _codec(audio: Audio, codec: str, bitrate: int) -> Audio:
    """A lossy round-trip through PyAV (libmp3lame / libopus), decoded by the service's decoder."""
    import av

    container_format, codec_name, rate = {
        "mp3": ("mp3", "libmp3lame", 16000),
        "opus": ("ogg", "libopus", 48000),
    }[codec]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream: Any = container.add_stream(codec_name, rate=rate)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        source = audio
        if rate != SAMPLE_RATE:
            from scipy.signal import resample_poly

            source = np.asarray(resample_poly(audio, rate // SAMPLE_RATE, 1), dtype=np.float32)
        pcm = (np.clip(source, -1.0, 1.0) * 32767).astype(np.int16)
        step = 960 * (rate // 48000 if rate >= 48000 else 1)
        for begin in range(0, pcm.size, step * 20):
            frame = av.AudioFrame.from_ndarray(
                pcm[None, begin : begin + step * 20], format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    decoded = decode_bytes(buffer.getvalue(), container_format).samples.astype(np.float32)
    result = np.zeros_like(audio)
    result[: min(audio.size, decoded.size)] = decoded[: audio.size]
    return result


def render(item: Spec, voices: Sequence[Voice] = VOICES) -> Conversation:
    """The conversation `item` describes: mixed, degraded audio and its exact dry references."""
    rng = random.Random(item.seed)
    noise_rng = np.random.default_rng(item.seed)
    picked = rng.sample(list(voices), item.num_speakers)
    speakers = {f"spk{index}": voice for index, voice in enumerate(picked)}
    lines = _script(rng, list(speakers), item.minutes * 60.0)
    clips = _synthesize_all([(line.text, _vary(speakers[line.speaker], rng)) for line in lines])

    rng = random.Random(item.seed ^ 0x0F1ACE)  # placement draws its own stream
    placed: list[tuple[_Line, int, Audio]] = []
    speech_end = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)
    busy: dict[str, int] = {}  # each speaker's own speech end: nobody overlaps themselves
    for line, clip in zip(lines, clips, strict=True):
        if line.kind == "backchannel" and placed:
            host = placed[-1]  # said over the middle of (or just after) the last turn
            start = host[1] + int(rng.uniform(0.3, 0.9) * max(1, host[2].size))
        elif placed and placed[-1][0].speaker == line.speaker:  # a pause inside one speaker's turn
            start = speech_end + int(rng.uniform(0.3, 1.2) * SAMPLE_RATE)
        elif placed and rng.random() < 3.5 * item.overlap:  # an interruption: 0.4-1.6 s of talking over
            start = speech_end - int(rng.uniform(0.4, 1.6) * SAMPLE_RATE)
        else:
            start = speech_end + int(rng.uniform(0.15, 1.0) * SAMPLE_RATE)
        start = max(start, busy.get(line.speaker, 0) + SAMPLE_RATE // 10, placed[-1][1] if placed else 0)
        placed.append((line, start, clip))
        busy[line.speaker] = start + clip.size
        speech_end = max(speech_end, start + clip.size)

    condition = item.condition
    gains = {name: 10 ** (rng.uniform(-condition.level_db, condition.level_db) / 20) for name in speakers}
    rooms = {name: _room(noise_rng, condition.rt60_s) for name in speakers} if condition.rt60_s else {}
    length = speech_end + int(rng.uniform(0.5, 1.0) * SAMPLE_RATE)
    mix = np.zeros(length + (max(r.size for r in rooms.values()) if rooms else 0), dtype=np.float32)
    for line, start, clip in placed:
        wet = np.convolve(clip, rooms[line.speaker]) if rooms else clip
        mix[start : start + wet.size] += gains[line.speaker] * wet
    mix = mix[:length]
    if condition.noise:
        speech_power = float(np.mean(np.square(mix[np.abs(mix) > 0.01 * np.abs(mix).max()]))) or 1e-6
        noise = _noise(condition.noise, length, noise_rng, item.seed)
        snr = rng.uniform(*condition.snr_db)
        scale = np.sqrt(speech_power / 10 ** (snr / 10) / max(float(np.mean(noise**2)), 1e-12))
        mix = (mix + noise * np.float32(scale)).astype(np.float32)
    if condition.telephone:
        mix = _telephone(mix)
    mix = mix * np.float32(0.8 / max(float(np.abs(mix).max()), 1e-6))
    if condition.codec:
        mix = _codec(mix, condition.codec, condition.bitrate)
    np.clip(mix, -1.0, 1.0, out=mix)
    turns = [
        RefTurn(line.speaker, start / SAMPLE_RATE, (start + clip.size) / SAMPLE_RATE, line.text)
        for line, start, clip in placed
    ]
    return Conversation(mix.astype(np.float32), turns, item.uri, speakers)


def overlap_share(turns: Sequence[RefTurn]) -> float:
    """The share of speech time (union of turns) during which two or more speakers talk."""
    edges = sorted({t.start for t in turns} | {t.end for t in turns})
    speech = overlapped = 0.0
    for left, right in itertools.pairwise(edges):
        active = sum(1 for t in turns if t.start < right and t.end > left)
        speech += (right - left) * (active > 0)
        overlapped += (right - left) * (active > 1)
    return overlapped / speech if speech else 0.0


def write_set(
    out: Path,
    split: str,
    count: int,
    max_speakers: int = 6,
    max_minutes: float = 10.0,
    voices: Sequence[Voice] = VOICES,
) -> Path:
    """Render conversations 0..count-1 of `split` under `out` (reusing files already there) and
    write a manifest whose entries also carry `num_speakers` and `condition` (for report rows)."""
    folder = out / "conversations"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(count):
        item = spec(split, index, max_speakers, max_minutes)
        wav, rttm, words = (folder / f"{item.uri}{suffix}" for suffix in (".wav", ".rttm", ".json"))
        if not (wav.exists() and rttm.exists() and words.exists()):
            talk = render(item, voices)
            write_wav(wav, talk.audio)
            rttm.write_text(talk.rttm())
            reference = {
                "uri": item.uri,
                "duration": talk.duration,
                "transcript": talk.transcript(),
                "words": [{"word": word, "speaker": speaker} for word, speaker in talk.words()],
                "turns": [asdict(turn) for turn in talk.turns],
                "voices": {name: asdict(voice) for name, voice in talk.voices.items()},
                "overlap_share": round(overlap_share(talk.turns), 4),
            }
            words.write_text(json.dumps(reference, indent=1) + "\n")
        document = json.loads(words.read_text())
        entries.append(
            {
                "audio_filepath": str(wav),
                "text": document["transcript"],
                "duration": round(document["duration"], 4),
                "uri": item.uri,
                "rttm_filepath": str(rttm),
                "words_filepath": str(words),
                "num_speakers": item.num_speakers,
                "condition": item.condition.name,
            }
        )
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory (files are reused)")
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="dev")
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--max-speakers", type=int, default=6)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--unseen-voices", action="store_true", help="speakers from UNSEEN_VOICES")
    args = parser.parse_args(argv)
    voices = UNSEEN_VOICES if args.unseen_voices else VOICES
    print(write_set(args.out, args.split, args.conversations, args.max_speakers, args.max_minutes, voices))


if __name__ == "__main__":
    main()
