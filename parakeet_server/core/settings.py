"""Settings from the environment by one rule, shared by the command line and the RunPod workers.

An empty (or blank) variable means "unset": its default applies, so a deployment template can
list every variable and fill in only some. A value that cannot be used raises ConfigError naming
the variable, the value and what was expected, so a bad setting stops the process at start-up
with one line that says what to fix instead of a traceback (or, worse, a silent default).

The converters (`whole`, `real`, `one_of`) are shared with the command line's flag types, so a
flag and its variable accept the same values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.core.live import LiveLimits

T = TypeVar("T")
Converter = Callable[[str], T]

MAX_AUDIO_SECONDS_ENV = "MAX_AUDIO_SECONDS"
AUTH_TOKEN_ENV = "PARAKEET_AUTH_TOKEN"
AUTH_TOKEN_FILE_ENV = "PARAKEET_AUTH_TOKEN_FILE"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names where it came from and what is expected."""


def whole(minimum: int | None = None, maximum: int | None = None) -> Converter[int]:
    """Whole numbers, optionally bounded; raises ValueError saying what is expected."""
    bounds = _bounds(minimum, maximum)

    def convert(raw: str) -> int:
        try:
            number = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number{bounds}") from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ValueError(f"expected a whole number{bounds}")
        return number

    return convert


def real(minimum: float | None = None, above: float | None = None) -> Converter[float]:
    """Finite numbers, at least `minimum` or strictly greater than `above`."""
    bounds = f" greater than {above:g}" if above is not None else _bounds(minimum, None)

    def convert(raw: str) -> float:
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"expected a number{bounds}") from None
        if (
            number != number  # NaN
            or number in (float("inf"), float("-inf"))
            or (minimum is not None and number < minimum)
            or (above is not None and number <= above)
        ):
            raise ValueError(f"expected a number{bounds}")
        return number

    return convert


def one_of(choices: Sequence[str]) -> Converter[str]:
    """One of `choices`, exactly."""

    def convert(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw

    return convert


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" of at least {minimum:g}"
    if maximum is not None:
        return f" of at most {maximum:g}"
    return ""


class Env:
    """Typed reads of one environment mapping (os.environ unless given), by the one rule above."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when the variable is missing or blank."""
        value = self._environ.get(name, "").strip()
        return value or None

    def get(self, name: str, default: T, convert: Converter[T]) -> T:
        """`convert(value)`, or `default` when unset; a value `convert` refuses is a ConfigError."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError as error:
            raise ConfigError(f"{name}={value!r}: {error}") from None

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def secret(self, file_variable: str, variable: str, token_file: str = "") -> str:
        """A token from `token_file` (a flag's value), else from the file `file_variable` names,
        else from `variable`; "" when none is set. Never a command-line value, which ps shows."""
        path = token_file or self.text(file_variable)
        if path:
            source = f"{file_variable}={path!r}" if not token_file else repr(path)
            return read_token_file(path, source)
        return self.text(variable)


def read_token_file(path: str, source: str) -> str:
    """The stripped contents of a token file; an unreadable file is a ConfigError naming `source`."""
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the token file ({error.strerror or error})") from None


def auth_token(env: Env, token_file: str = "") -> str:
    """The bearer token a server requires: --auth-token-file, else PARAKEET_AUTH_TOKEN_FILE, else
    PARAKEET_AUTH_TOKEN; empty means no check. The same rule for the gRPC servers and the gateway."""
    return env.secret(AUTH_TOKEN_FILE_ENV, AUTH_TOKEN_ENV, token_file)


def audio_limits(env: Env) -> AudioLimits:
    """The per-request limits every service enforces (MAX_AUDIO_SECONDS, default 4 h)."""
    default = AudioLimits()
    return AudioLimits(
        max_bytes=default.max_bytes,
        max_duration_s=env.get(MAX_AUDIO_SECONDS_ENV, default.max_duration_s, real(above=0)),
    )


def live_limits(env: Env) -> LiveLimits:
    """What one live stream may do (STREAM_IDLE_TIMEOUT_S, default 30; MAX_STREAM_SECONDS, default 4 h)."""
    default = LiveLimits()
    return LiveLimits(
        idle_timeout_s=env.get("STREAM_IDLE_TIMEOUT_S", default.idle_timeout_s, real(above=0)),
        max_stream_seconds=env.get("MAX_STREAM_SECONDS", default.max_stream_seconds, real(above=0)),
    )


def device(raw: str) -> str:
    """auto (a GPU when there is one), cpu, cuda or cuda:N: what every engine's --device takes."""
    if raw in ("auto", "cpu", "cuda") or (raw.startswith("cuda:") and raw[5:].isdigit()):
        return raw
    raise ValueError("expected auto, cpu, cuda or cuda:N")


def worker_config(from_env: Callable[[], T]) -> T:
    """A RunPod worker's config; a bad variable becomes FAILED_PRECONDITION naming it, which the
    worker then answers every job with (a worker that crash-loops shows its users nothing)."""
    try:
        return from_env()
    except ConfigError as error:
        raise PreconditionFailed(f"the worker is misconfigured: {error}") from None
