"""The hotword rules of audio.proto, written once: the server checks every request with them, and
the client (`parakeet batch`) checks its own before uploading any audio."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from parakeet.v1 import audio_pb2

MAX_HOTWORDS = 100
MAX_PHRASE_CHARS = 100
MAX_BOOST = 10.0
DEFAULT_BOOST = 0.5  # measured on the tiny espeak model: docs/accuracy.md "Hotwords"


class HotwordError(ValueError):
    """A hotword list audio.proto's limits refuse; the message says which entry and why."""


def normalised_hotwords(
    hotwords: Sequence[audio_pb2.Hotword],
    field: str = "hotwords",
    where: Callable[[int], str] | None = None,
) -> list[tuple[str, float]]:
    """(phrase, boost) pairs, trimmed, sorted, a repeated phrase keeping its largest boost; a
    HotwordError for a list over the limits. `where(index)` names an entry in messages
    (default `hotwords[index]`)."""
    name = where or (lambda index: f"{field}[{index}]")
    if len(hotwords) > MAX_HOTWORDS:
        raise HotwordError(
            f"{field}: {len(hotwords)} hotwords is over the limit of {MAX_HOTWORDS}; keep the words the model "
            "actually misses"
        )
    chosen: dict[str, float] = {}
    for index, hotword in enumerate(hotwords):
        phrase = " ".join(hotword.phrase.split())
        if not phrase:
            raise HotwordError(f"{name(index)}: phrase is empty")
        if len(phrase) > MAX_PHRASE_CHARS:
            raise HotwordError(
                f"{name(index)}: phrase is {len(phrase)} characters, over the limit of {MAX_PHRASE_CHARS}"
            )
        boost = float(hotword.boost) if hotword.HasField("boost") else DEFAULT_BOOST
        if not (math.isfinite(boost) and 0.0 < boost <= MAX_BOOST):
            raise HotwordError(
                f"{name(index)}: boost must be in (0, {MAX_BOOST:g}] (got {hotword.boost:g}); leave it unset "
                f"for the default {DEFAULT_BOOST:g}"
            )
        chosen[phrase] = max(boost, chosen.get(phrase, 0.0))
    return sorted(chosen.items())
