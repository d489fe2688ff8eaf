"""`parakeet stream` against a scripted gRPC server (tests/client/scripted_stream.py): the text and
jsonl output byte for byte, interims redrawn on a terminal (a pseudo-tty) and left out of a pipe,
raw PCM from stdin, --realtime, usage errors (exit 2), service errors (exit 1) and the embedded
mode's entry point."""

from __future__ import annotations

import os
import pty
import random
import subprocess
import time
from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path

import grpc
import pytest

from parakeet import cli
from parakeet.v1 import orchestrator_pb2, streaming_pb2
from tests.client import scripted_stream
from tests.client.scripted_stream import Failure, Script, ScriptedStreams, final, interim, summary
from tests.client.test_streaming_client import pcm, wav
from tests.support.servers import REPO_ROOT, VENV_BIN

scripted = scripted_stream.scripted  # the fixture

REPLIES = [
    (1, interim("hel", 0.0, 0.1)),
    (2, interim("hello there", 0.0, 0.2)),
    (3, final("hello there", 0.04, 1.25, "SPEAKER_00", 0)),
    (4, interim("how", 1.5, 1.6)),
    (None, final("how are you", 1.5, 62.96, "SPEAKER_01", 1)),
    (None, summary(63.0, ("SPEAKER_00", "SPEAKER_01"), ("diarization stopped at 50.0 s",))),
]
FINALS = "[00:00.0-00:01.2] SPEAKER_00: hello there\n[00:01.5-01:03.0] SPEAKER_01: how are you\n"
WARNING = "parakeet: warning: diarization stopped at 50.0 s\n"
S16LE = streaming_pb2.AUDIO_ENCODING_PCM_S16LE


def parakeet(
    *args: object, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`.venv/bin/parakeet ARGS` with stdout and stderr pipes."""
    return subprocess.run(
        [str(VENV_BIN / "parakeet"), *map(str, args)],
        cwd=REPO_ROOT,
        input=stdin,
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    path = tmp_path / "call.wav"
    path.write_bytes(wav(pcm(0.5)))
    return path


# -- output -------------------------------------------------------------------------------------


def test_text_through_a_pipe_is_the_finals_only(
    scripted: tuple[str, ScriptedStreams], speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=REPLIES)
    argv = ["stream", str(speech), "--server", address, "--diarize", "--num-speakers", "2"]
    code = cli.main([*argv, "--endpoint-silence-ms", "300", "--no-interim", "--no-word-timestamps"])
    assert code == 0
    assert capsys.readouterr() == (FINALS, WARNING)
    (call,) = servicer.calls
    assert call.config == streaming_pb2.StreamingConfig(
        audio_format=streaming_pb2.StreamingAudioFormat(encoding=S16LE, sample_rate_hz=16_000, channels=1),
        diarize=True,
        num_speakers=2,
        endpoint_silence_ms=300,
        interim_results=False,
        word_timestamps=False,
    )
    assert b"".join(call.audio) == pcm(0.5)


def test_text_without_diarization_has_no_speaker_part(
    scripted: tuple[str, ScriptedStreams], speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=[(None, final("just words", 0.5, 2.0))])
    assert cli.main(["stream", str(speech), "--server", address]) == 0
    assert capsys.readouterr() == ("[00:00.5-00:02.0] just words\n", "")
    assert servicer.calls[0].config.diarize is False
    assert not servicer.calls[0].config.HasField("interim_results")


def test_jsonl_is_every_response_a_line(
    scripted: tuple[str, ScriptedStreams], speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=REPLIES[:3] + REPLIES[5:])
    assert cli.main(["stream", str(speech), "--server", address, "--format", "jsonl", "--diarize"]) == 0
    out, err = capsys.readouterr()
    assert out == (
        '{"interim": {"text": "hel", "start": 0.0}, "processed_seconds": 0.1}\n'
        '{"interim": {"text": "hello there", "start": 0.0}, "processed_seconds": 0.2}\n'
        '{"final_result": {"text": "hello there", "start": 0.04, "end": 1.25, "speaker": "SPEAKER_00", '
        '"words": [], "utterance_index": 0}, "processed_seconds": 1.25}\n'
        '{"summary": {"duration": 63.0, "num_speakers": 2, "speakers": ["SPEAKER_00", "SPEAKER_01"], '
        '"model": "scripted", "warnings": ["diarization stopped at 50.0 s"], "num_finals": 0, '
        '"speaker_identities": []}, '
        '"processed_seconds": 63.0}\n'
    )
    assert err == WARNING


def read_pty(command: list[str], env: dict[str, str]) -> tuple[bytes, bytes, int]:
    """Run `command` with stdout on a pseudo-terminal; everything it drew there, its stderr, status."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdout=terminal, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        drawn += data
    os.close(controller)
    _out, err = process.communicate(timeout=30)
    return drawn, err, process.returncode


def test_on_a_terminal_the_interim_is_redrawn_in_place(
    scripted: tuple[str, ScriptedStreams], speech: Path
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=REPLIES)
    env = {**os.environ, "COLUMNS": "8"}
    drawn, err, code = read_pty([str(VENV_BIN / "parakeet"), "stream", str(speech), "--server", address], env)
    assert (code, err.decode()) == (0, WARNING)
    clear = "\r\x1b[K"
    # The terminal turns "\n" into "\r\n"; an interim longer than the width shows its tail.
    assert drawn.decode() == (
        f"{clear}hel{clear}o there{clear}[00:00.0-00:01.2] SPEAKER_00: hello there\r\n"
        f"{clear}how{clear}[00:01.5-01:03.0] SPEAKER_01: how are you\r\n"
    )


# -- audio --------------------------------------------------------------------------------------


def test_raw_pcm_from_stdin(scripted: tuple[str, ScriptedStreams]) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=[(None, final("piped", 0.0, 0.3))])
    raw = pcm(0.35)
    piped = parakeet("stream", "-", "--server", address, stdin=raw)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, b"[00:00.0-00:00.3] piped\n", b"")
    f32 = pcm(0.35, rate=8000, channels=2, width=4, seed=3)
    told = parakeet(
        *(
            "stream",
            "-",
            "--server",
            address,
            "--encoding",
            "f32le",
            "--sample-rate",
            "8000",
            "--channels",
            "2",
        ),
        stdin=f32,
    )
    assert told.returncode == 0, told.stderr
    default, described = servicer.calls
    assert default.config.audio_format == streaming_pb2.StreamingAudioFormat(
        encoding=S16LE, sample_rate_hz=16_000, channels=1
    )
    assert default.audio == [raw[:3200], raw[3200:6400], raw[6400:9600], raw[9600:]]
    assert described.config.audio_format == streaming_pb2.StreamingAudioFormat(
        encoding=streaming_pb2.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=8000, channels=2
    )
    assert [len(chunk) for chunk in described.audio] == [6400, 6400, 6400, 3200]
    assert b"".join(described.audio) == f32


def test_realtime_paces_a_wav_and_is_refused_for_an_encoded_file(
    scripted: tuple[str, ScriptedStreams], tmp_path: Path
) -> None:
    address, servicer = scripted
    second = tmp_path / "second.wav"
    second.write_bytes(wav(pcm(1.0)))
    paced = parakeet("stream", second, "--server", address, "--realtime")
    assert paced.returncode == 0, paced.stderr
    (call,) = servicer.calls
    times = call.audio_times
    assert len(times) == 10 and 0.85 <= times[-1] - call.requests[0][0] < 1.5

    mp3 = tmp_path / "call.mp3"
    mp3.write_bytes(b"ID3" + random.Random(2).randbytes(3000))
    refused = parakeet("stream", mp3, "--server", address, "--realtime")
    assert (refused.returncode, refused.stdout) == (2, b"")
    assert refused.stderr.decode().splitlines()[-1] == (
        f"parakeet: error: --realtime: {mp3} is not PCM: realtime pacing needs the audio's duration up "
        "front, which only raw PCM and 16-bit WAV have; send this file as fast as possible, or let ffmpeg "
        "pace it: ffmpeg -re -i FILE -f s16le -ac 1 -ar 16000 - | parakeet stream -"
    )
    sent = parakeet("stream", mp3, "--server", address)
    assert sent.returncode == 0, sent.stderr
    assert len(servicer.calls) == 2
    assert servicer.calls[1].config.audio_format == streaming_pb2.StreamingAudioFormat(
        encoding=streaming_pb2.AUDIO_ENCODING_CONTAINER, container="mp3"
    )
    assert b"".join(servicer.calls[1].audio) == mp3.read_bytes()


# -- usage and service errors -------------------------------------------------------------------


SUBCOMMAND = "parakeet stream: error: argument "


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-speakers", "0"], SUBCOMMAND + "--num-speakers: must be at least 1, got 0"),
        (
            ["--endpoint-silence-ms", "100"],
            SUBCOMMAND + "--endpoint-silence-ms: must be 0 (the server's default) or at least 160, got 100",
        ),
        (
            ["--format", "srt"],
            SUBCOMMAND + "-f/--format: invalid choice: 'srt' (choose from 'text', 'jsonl')",
        ),
        (
            ["--encoding", "mulaw"],
            SUBCOMMAND + "--encoding: invalid choice: 'mulaw' (choose from 's16le', 'f32le')",
        ),
        (
            ["--sample-rate", "8000"],
            "parakeet: error: --sample-rate describes raw PCM on stdin (-); AUDIO is a file, which carries "
            "its own format",
        ),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    args: list[str], message: str, speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["stream", str(speech), "--server", "127.0.0.1:1", *args])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert (out, err.splitlines()[-1]) == ("", message.replace("AUDIO", str(speech)))


def test_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["stream", "/nonexistent/call.wav", "--server", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "parakeet: error: /nonexistent/call.wav: no such file (give a path to an audio file, or - for raw "
        "PCM on stdin)\n"
    )


def test_a_failed_stream_prints_its_finals_then_the_error_and_exits_1(
    scripted: tuple[str, ScriptedStreams], speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = scripted
    servicer.script = Script(
        replies=[(None, final("kept", 0.0, 1.0))],
        failure=Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "the stream passed its 3600 s", "DURATION_LIMIT"),
    )
    assert cli.main(["stream", str(speech), "--server", address]) == 1
    assert capsys.readouterr() == (
        "[00:00.0-00:01.0] kept\n",
        "parakeet: error: RESOURCE_EXHAUSTED: the stream passed its 3600 s (request req-stream-1)\n",
    )


def test_the_token_comes_from_the_environment(scripted: tuple[str, ScriptedStreams], speech: Path) -> None:
    address, servicer = scripted
    done = parakeet("stream", speech, "--server", address, env={cli.TOKEN_ENV: "s3cret"})
    assert done.returncode == 0, done.stderr
    assert servicer.calls[0].metadata["authorization"] == "Bearer s3cret"


def test_an_interrupt_cancels_the_stream(scripted: tuple[str, ScriptedStreams]) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=[(1, interim("hel"))], until_cancelled=True)
    process = subprocess.Popen(
        [str(VENV_BIN / "parakeet"), "stream", "-", "--server", address, "--realtime"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert process.stdin is not None
    process.stdin.write(pcm(0.5))
    process.stdin.flush()
    deadline = time.monotonic() + 20
    while not (servicer.calls and servicer.calls[0].audio) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(2)  # SIGINT, as Ctrl-C
    _out, err = process.communicate(timeout=20)
    assert (process.returncode, err) == (130, b"")
    assert servicer.calls[0].cancelled.wait(5.0) and not servicer.calls[0].finished


# -- embedded mode ------------------------------------------------------------------------------

EMBEDDED: dict[str, object] = {}


def embedded_stand_in(
    config: streaming_pb2.StreamingConfig, chunks: Iterable[bytes], **options: object
) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]:
    """Where the server's `stream` entry point would run the models: records its arguments."""
    EMBEDDED.update(config=config, options=options, chunks=[bytes(chunk) for chunk in chunks])
    yield final("embedded", 0.0, 0.5)


def test_embedded_mode_calls_the_servers_stream_entry_point(
    monkeypatch: pytest.MonkeyPatch, speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    point = EntryPoint("stream", f"{__name__}:embedded_stand_in", cli.EMBEDDED_GROUP)
    monkeypatch.setattr(
        cli,
        "entry_points",
        lambda **select: EntryPoints((point,)) if select["name"] == "stream" else EntryPoints(()),
    )
    started = time.monotonic()
    argv = ["stream", str(speech), "--diarize", "--model", "m.nemo", "--pipeline", "p", "-q", "--realtime"]
    assert cli.main(argv) == 0
    assert time.monotonic() - started >= 0.45  # --realtime paces the chunks the entry point reads
    assert capsys.readouterr() == ("[00:00.0-00:00.5] embedded\n", "")
    assert EMBEDDED["config"] == streaming_pb2.StreamingConfig(
        audio_format=streaming_pb2.StreamingAudioFormat(encoding=S16LE, sample_rate_hz=16_000, channels=1),
        diarize=True,
    )
    assert b"".join(EMBEDDED["chunks"]) == pcm(0.5) and len(EMBEDDED["chunks"]) == 5
    options = dict(EMBEDDED["options"])
    assert callable(options.pop("step"))
    assert options == {"model": "m.nemo", "pipeline": "p", "verbose": False}


def test_without_the_server_the_stream_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda **_select: EntryPoints(()))
    with pytest.raises(SystemExit) as exited:
        cli.main(["stream", str(speech)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "parakeet: error: no --server given, and the embedded mode (the models in this process) is not "
        "installed: pip install 'parakeet-grpc[asr,diarization]', or use --server HOST:PORT\n"
    )
