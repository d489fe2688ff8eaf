"""`parakeet batch` with known speakers, hotwords and multichannel on the real models (tiny TDT + the
offline diarizer, over a gRPC orchestrator that records what it is asked): the run's --speaker names
a voice enrolled from OTHER sentences by it (eval.voiceprints.enrolment_audio), a manifest row's own
speakers/hotwords/multichannel replace the run's in its request, results.jsonl lists the names
matched, and a row's missing voiceprint file is that row's failure."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from eval import synth
from eval.voiceprints import enrolment_audio
from parakeet.client import enroll_request, write_voiceprint
from tests.batch.test_batch_cli import batch, rows, server  # noqa: F401  # `server`: the recording orchestrator

pytestmark = [pytest.mark.slow, pytest.mark.espeak]
ALICE, BOB = synth.VOICES[0], synth.VOICES[1]


def speech(voice: synth.Voice, seed: int, count: int = 3) -> np.ndarray:
    """`count` sentences by `voice`, 0.4 s apart: a few seconds of one speaker."""
    pause = np.zeros(int(0.4 * synth.SAMPLE_RATE), np.float32)
    clips = [synth.synthesize(text, voice) for text in synth.sentences(seed, count, min_words=5, max_words=8)]
    return np.concatenate([part for clip in clips for part in (clip, pause)])


def write_stereo(path: Path, left: np.ndarray, right: np.ndarray) -> None:
    """16-bit stereo WAV: one party per channel, as a call recorder writes it."""
    length = max(len(left), len(right))
    both = np.zeros((length, 2), np.float32)
    both[: len(left), 0], both[: len(right), 1] = left, right
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(synth.SAMPLE_RATE)
        writer.writeframes((np.clip(both, -1, 1) * 32767).round().astype("<i2").tobytes())


def enrol(tmp_path: Path, name: str, voice: synth.Voice, seed: int) -> Path:
    """A voiceprint file of `voice` made by the offline backend's speaker model, as `parakeet enroll` makes it."""
    from parakeet_server.embedded import enroll

    audio = tmp_path / f"{name}-enrol.wav"
    synth.write_wav(audio, enrolment_audio(voice, seed).samples)
    return write_voiceprint(
        tmp_path / f"{name}.voiceprint.json", enroll(enroll_request(audio, name=name), pipeline="offline")
    )


def test_known_speakers_hotwords_and_multichannel_per_run_and_per_row(server, tmp_path: Path) -> None:  # noqa: F811
    address, servicer = server
    voices = tmp_path / "voices"
    voices.mkdir()
    alice, bob = enrol(voices, "Alice", ALICE, 11), enrol(voices, "Bob", BOB, 12)
    synth.write_wav(tmp_path / "alice_talk.wav", speech(ALICE, 301))
    synth.write_wav(tmp_path / "bob_talk.wav", speech(BOB, 302))
    left, right = speech(ALICE, 303, 2), speech(BOB, 304, 2)
    write_stereo(tmp_path / "call.wav", np.concatenate([left, np.zeros(len(right), np.float32)]),
                 np.concatenate([np.zeros(len(left), np.float32), right]))  # fmt: skip
    (tmp_path / "list.jsonl").write_text(
        "\n".join(
            json.dumps(row)
            for row in (
                # num_speakers: untold, the offline diarizer splits this one voice into several labels
                {
                    "path": "bob_talk.wav",
                    "speakers": ["voices/Bob.voiceprint.json"],
                    "hotwords": ["island:2"],
                    "num_speakers": 1,
                },
                {"path": "call.wav", "multichannel": True, "diarize": False},
                {"path": "alice_talk.wav", "speakers": ["voices/nobody.voiceprint.json"]},
            )
        )
        + "\n"
    )
    out = tmp_path / "out"
    count = len(servicer.requests)
    code = batch(
        tmp_path / "alice_talk.wav", tmp_path / "list.jsonl", "--out", out, "--server", address,
        "--diarize", "--speaker", alice, "--speaker", bob, "--hotword", "Kubernetes:2",
        "--format", "json,rttm", "--concurrency", "1", "-q",
    )  # fmt: skip
    assert code == 1  # the row with a missing voiceprint file failed

    logged = {row["key"]: row for row in rows(out)}
    assert sorted(logged) == ["alice_talk", "alice_talk-2", "bob_talk", "call"]
    failed = logged["alice_talk-2"]
    assert (failed["status"], failed["reason"]) == ("failed", "INVALID_FIELD")
    assert (
        "speakers: cannot read the voiceprint file" in failed["error"]
        and "nobody.voiceprint.json" in failed["error"]
    )

    sent = {request.audio.content: request for request in servicer.requests[count:]}
    assert len(sent) == 3  # the failed row never reached the server
    own = sent[(tmp_path / "alice_talk.wav").read_bytes()]
    assert [s.name for s in own.known_speakers] == ["Alice", "Bob"]
    assert [(h.phrase, h.boost) for h in own.hotwords] == [("Kubernetes", 2.0)]
    assert (own.diarize, own.multichannel) == (True, False)
    row = sent[(tmp_path / "bob_talk.wav").read_bytes()]
    assert [s.name for s in row.known_speakers] == ["Bob"]
    assert [(h.phrase, h.boost) for h in row.hotwords] == [("island", 2.0)]
    assert row.num_speakers == 1 and not own.HasField("num_speakers")
    call = sent[(tmp_path / "call.wav").read_bytes()]
    assert (call.multichannel, call.diarize, list(call.known_speakers)) == (True, False, [])

    named = json.loads((out / "alice_talk.json").read_text())
    assert {word["speaker"] for word in named["words"]} == {"Alice"}
    assert logged["alice_talk"]["matched_speakers"] == ["Alice"]
    assert {word["speaker"] for word in json.loads((out / "bob_talk.json").read_text())["words"]} == {"Bob"}
    assert logged["bob_talk"]["matched_speakers"] == ["Bob"]
    stereo = json.loads((out / "call.json").read_text())
    assert {word["speaker"] for word in stereo["words"]} == {"CHANNEL_0", "CHANNEL_1"}
    assert logged["call"]["matched_speakers"] == []
    assert {line.split()[7] for line in (out / "call.rttm").read_text().splitlines()} == {
        "CHANNEL_0",
        "CHANNEL_1",
    }
