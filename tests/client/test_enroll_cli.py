"""`parakeet enroll` and `transcribe --speaker`: voiceprint files, usage errors, the embedded mode."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint, EntryPoints, entry_points
from pathlib import Path

import numpy as np
import pytest

from eval import synth
from eval.voiceprints import enrolment_audio
from parakeet import cli
from parakeet.client import known_speaker_messages, read_voiceprint, write_voiceprint
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, streaming_pb2

# The entry point lives in pyproject.toml; an install from before it was added lacks it.
registered = pytest.mark.skipif(
    not any(point.name == "enroll" for point in entry_points(group=cli.EMBEDDED_GROUP)),
    reason="parakeet.embedded:enroll not registered: pip install -e . again",
)


def enrolled(name: str = "Alice") -> diarization_pb2.EnrollResponse:
    voiceprint = audio_pb2.Voiceprint(
        embedding=[0.6, 0.8], model="resemblyzer", model_version="v1", speech_seconds=12.5
    )
    return diarization_pb2.EnrollResponse(voiceprint=voiceprint, name=name, duration=13.0)


def test_a_voiceprint_file_round_trips_as_a_known_speaker(tmp_path: Path) -> None:
    path = write_voiceprint(tmp_path / "alice.voiceprint.json", enrolled())
    document = json.loads(path.read_text())
    assert document["name"] == "Alice"
    assert document["voiceprint"]["modelVersion"] == "v1"
    speaker = read_voiceprint(path)
    assert speaker.name == "Alice" and list(speaker.voiceprint.embedding) == pytest.approx([0.6, 0.8])
    assert known_speaker_messages([path])[0] == speaker
    by_tuple = known_speaker_messages([("Bob", b"RIFF")])[0]
    assert by_tuple.name == "Bob" and by_tuple.reference.content == b"RIFF"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "is not a voiceprint file (made by `parakeet enroll`)"),
        ('{"name": "Alice"}', "holds no voiceprint embedding; make it with `parakeet enroll`"),
        ('{"voiceprint": {"embedding": [1.0]}}', "has no name; enrol with --name NAME"),
    ],
)
def test_transcribe_refuses_a_bad_speaker_file_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    audio = tmp_path / "call.wav"
    synth.write_wav(audio, np.zeros(16000, np.float32))
    bad = tmp_path / "bad.voiceprint.json"
    bad.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["transcribe", str(audio), "--diarize", "--speaker", str(bad), "--server", "127.0.0.1:1"])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_speaker_without_diarize_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = tmp_path / "call.wav"
    synth.write_wav(audio, np.zeros(16000, np.float32))
    voiceprint = write_voiceprint(tmp_path / "a.voiceprint.json", enrolled())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["transcribe", str(audio), "--speaker", str(voiceprint), "--server", "127.0.0.1:1"])
    assert exit_.value.code == 2
    assert "--speaker names speakers found by diarization: add --diarize" in capsys.readouterr().err


@registered
@pytest.mark.espeak
def test_embedded_enroll_writes_a_voiceprint_of_the_offline_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "alice.wav"
    synth.write_wav(audio, enrolment_audio(synth.VOICES[0], 11).samples)
    out = tmp_path / "alice.voiceprint.json"
    code = cli.main(["enroll", str(audio), "--name", "Alice", "-o", str(out), "--pipeline", "offline", "-q"])
    assert code == 0
    speaker = read_voiceprint(out)
    assert speaker.name == "Alice"
    assert speaker.voiceprint.model == "campplus+resemblyzer"
    assert len(speaker.voiceprint.embedding) == 448  # CAM++ 192 + resemblyzer 256
    assert 8.0 <= speaker.voiceprint.speech_seconds <= 20.5
    assert f"{out}: Alice, " in capsys.readouterr().err


@registered
@pytest.mark.espeak
def test_embedded_enroll_of_too_little_speech_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "short.wav"
    synth.write_wav(audio, synth.synthesize("hello", synth.VOICES[0]))
    out = tmp_path / "x.voiceprint.json"
    code = cli.main(["enroll", str(audio), "--name", "X", "-o", str(out), "--pipeline", "offline", "-q"])
    assert code == 1
    assert "INVALID_ARGUMENT: the audio holds" in capsys.readouterr().err
    assert not out.exists()


STREAMED: dict[str, object] = {}


def stream_stand_in(
    config: streaming_pb2.StreamingConfig, chunks: Iterable[bytes], **options: object
) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]:
    """Where the server's `stream` entry point would run the models: records the config."""
    STREAMED.update(config=config)
    for _chunk in chunks:
        pass
    yield orchestrator_pb2.StreamingOrchestrateResponse(
        final_result=streaming_pb2.FinalResult(text="hi", start=0.0, end=0.5, speaker="Alice")
    )


def test_stream_passes_speakers_and_hotwords_into_the_streaming_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point = EntryPoint("stream", f"{__name__}:stream_stand_in", cli.EMBEDDED_GROUP)
    monkeypatch.setattr(
        cli, "entry_points", lambda **select: EntryPoints((point,) if select["name"] == "stream" else ())
    )
    audio = tmp_path / "call.wav"
    synth.write_wav(audio, np.zeros(8000, np.float32))
    voiceprint = write_voiceprint(tmp_path / "a.voiceprint.json", enrolled())
    argv = ["stream", str(audio), "--diarize", "--speaker", str(voiceprint), "--speaker-threshold", "0.7"]
    assert cli.main([*argv, "--hotword", "Kubernetes", "--hotword", "Ada Lovelace:2", "-q"]) == 0
    assert capsys.readouterr().out == "[00:00.0-00:00.5] Alice: hi\n"
    config = STREAMED["config"]
    assert isinstance(config, streaming_pb2.StreamingConfig)
    assert list(config.known_speakers) == [read_voiceprint(voiceprint)]
    assert config.speaker_match_threshold == pytest.approx(0.7) and config.diarize
    assert [(h.phrase, h.boost) for h in config.hotwords] == [("Kubernetes", 0.0), ("Ada Lovelace", 2.0)]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["stream", "{audio}", "--speaker", "{print}"], "--speaker names speakers found by diarization"),
        (["stream", "{audio}", "--diarize", "--speaker", "{audio}"], "--speaker: "),
        (
            ["stream", "{audio}", "--diarize", "--speaker", "{print}", "--speaker-threshold", "2"],
            "--speaker-threshold is a cosine similarity: give a value in [-1, 1]",
        ),
        (
            ["enroll", "{audio}", "--name", "A", "--runpod", "abc"],
            "--runpod needs the API key in the environment",
        ),
        (
            ["enroll", "{audio}", "--name", "A", "--runpod", "abc", "--server", "h:1"],
            "not allowed with argument",
        ),
    ],
)
def test_stream_and_enroll_usage_errors_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.delenv("RUNPOD_ENDPOINT_URL", raising=False)
    audio = tmp_path / "call.wav"
    synth.write_wav(audio, np.zeros(8000, np.float32))
    voiceprint = write_voiceprint(tmp_path / "a.voiceprint.json", enrolled())
    filled = [arg.format(audio=audio, print=voiceprint) for arg in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(filled)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
