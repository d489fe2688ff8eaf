"""Live streaming through the real `parakeet-server all` process: grpcurl, `parakeet stream`, SIGTERM.

The servers run the trained tiny TDT and the offline diarization backend; the orchestrator
streams to its two backends over gRPC (the split architecture on one machine). A synthesized
two-speaker conversation must come back as speaker-labelled finals, from grpcurl fed JSON
messages (what the README shows) and from the client CLI, and a server told to stop mid-stream
must first give the stream its finals and summary.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from eval import synth
from tests.support.servers import REPO_ROOT, VENV_BIN, free_port, wait_for_health

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
ORCHESTRATOR = "parakeet.v1.OrchestratorService"
RATE = 16_000


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[synth.Conversation, Path]:
    conversation = synth.conversation(seed=1207, num_speakers=2, num_turns=6, overlap_probability=0.0)
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    synth.write_wav(path, conversation.audio)
    return conversation, path


def start_all(spawn: Any) -> tuple[Any, str]:
    ports = {name: free_port() for name in ("transcription", "diarization", "orchestrator")}
    process = spawn(
        "parakeet-server",
        "all",
        "--host",
        "127.0.0.1",
        "--model",
        str(MODEL),
        "--pipeline",
        "offline",
        "--device",
        "cpu",
        "--grace",
        "20",
        *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
    )
    address = f"127.0.0.1:{ports['orchestrator']}"
    wait_for_health(address, ORCHESTRATOR, process=process, timeout=240)
    return process, address


def spoken(conversation: synth.Conversation) -> list[str]:
    """The reference turns' texts in order, for comparing with the finals' speaker runs."""
    return [turn.text for turn in sorted(conversation.turns, key=lambda t: t.start)]


def test_grpcurl_cli_and_sigterm_on_a_live_stream(spawn: Any, talk: tuple[synth.Conversation, Path]) -> None:
    conversation, path = talk
    process, address = start_all(spawn)

    # grpcurl: a config message, then base64 PCM chunks, as JSON messages on stdin.
    pcm = (conversation.audio.clip(-1, 1) * 32767).round().astype("<i2").tobytes()
    chunk = RATE // 2 * 2  # 0.5 s
    messages = [json.dumps({"config": {"diarize": True, "interimResults": False}})] + [
        json.dumps({"audio": base64.b64encode(pcm[i : i + chunk]).decode()})
        for i in range(0, len(pcm), chunk)
    ]
    result = subprocess.run(
        [str(VENV_BIN / "grpcurl"), "-plaintext", "-d", "@", address, f"{ORCHESTRATOR}/StreamingOrchestrate"],
        input="\n".join(messages),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    responses: list[dict[str, Any]] = []
    text = result.stdout.strip()
    while text:
        response, end = decoder.raw_decode(text)
        responses.append(response)
        text = text[end:].strip()
    finals = [r["final_result"] for r in responses if "final_result" in r]
    assert len(finals) >= len(spoken(conversation)) - 1
    speakers = [final["speaker"] for final in finals]
    assert set(speakers) == {"SPEAKER_00", "SPEAKER_01"}
    assert all(a != b for a, b in itertools.pairwise(speakers)), "turns alternate"
    assert responses[-1]["summary"]["num_speakers"] == 2
    assert not any("interim" in r for r in responses)

    # The client CLI against the same server prints the same finals.
    cli = subprocess.run(
        [str(VENV_BIN / "parakeet"), "stream", str(path), "--diarize", "--server", address],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert cli.returncode == 0, cli.stderr
    lines = cli.stdout.strip().splitlines()
    assert [re.sub(r"^\[[^]]*\] ", "", line) for line in lines] == [
        f"{final['speaker']}: {final['text']}" for final in finals
    ]

    # SIGTERM while a stream is live (paced in real time): it gets its finals and summary first.
    live = subprocess.Popen(
        [str(VENV_BIN / "parakeet"), "stream", str(path), "--diarize", "--realtime", "--server", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = live.stdout.readline() if live.stdout else ""  # the first final: the stream is live
    assert first.startswith("[")
    stopped = threading.Event()

    def wait_for_exit() -> None:
        process.wait()
        stopped.set()

    threading.Thread(target=wait_for_exit, daemon=True).start()
    process.send_signal(signal.SIGTERM)
    rest, errors = live.communicate(timeout=60)
    assert live.returncode == 0, errors
    assert rest.strip(), "the drained stream flushed its last finals"
    assert stopped.wait(30) and process.returncode == 0
    assert "received SIGTERM; draining" in process.output()
