"""`parakeet batch` usage errors: exit 2 with what to change, before any model loads."""

from __future__ import annotations

import pytest

from parakeet import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.wav"], "missing.wav: no such file or directory"),
        (["{tmp}/a.wav", "--format", "json,docx"], "--format: no batch format 'docx'"),
        (["{tmp}/a.wav", "--format", "srt,rttm"], "--format rttm lists speaker turns: add --diarize"),
        (["{tmp}/a.wav", "--runpod-url", "http://x"], "--runpod-url goes with --runpod"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(tmp_path, capsys, args, message) -> None:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(SystemExit) as caught:
        cli.main(["batch", *(arg.format(tmp=tmp_path) for arg in args), "--out", str(tmp_path / "out")])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_help_names_inputs_backends_and_resuming(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = capsys.readouterr().out
    for words in (
        "LIST.jsonl",
        "--ray [ADDRESS]",
        "results.jsonl",
        "kill -9",
        "exit status: 0 all done, 1 any input failed",
    ):
        assert words in text
