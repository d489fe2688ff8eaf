"""`parakeet-server` takes flags only by their full names."""

from __future__ import annotations

import pytest

from parakeet_server.cli import build_parser


@pytest.mark.parametrize("command", ["transcription", "diarization", "orchestrator", "all", "gateway"])
def test_a_token_typed_as_a_flag_prefix_is_refused(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse would read `--auth-token s3cret` as `--auth-token-file s3cret`: a secret in `ps`,
    # then opened as a path. Without prefix matching it is an unknown option.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--auth-token", "s3cret"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --auth-token s3cret" in capsys.readouterr().err


def test_full_flag_names_still_parse() -> None:
    args = build_parser().parse_args(["transcription", "--auth-token-file", "/run/secrets/token"])
    assert args.auth_token_file == "/run/secrets/token"
