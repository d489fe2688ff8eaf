"""Rendering of transcripts and speaker turns into documents: text, srt, vtt, rttm.

The one renderer every service and path uses, so a cue looks the same whether it came from the
transcription endpoint, the orchestrator or the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

from parakeet.v1 import audio_pb2


def render_rttm(turns: Sequence[audio_pb2.SpeakerTurn], file_id: str = "audio") -> str:
    """NIST RTTM: one SPEAKER line per turn (onset and duration in seconds, 3 decimals)."""
    lines = [
        f"SPEAKER {file_id} 1 {turn.start:.3f} {max(0.0, turn.end - turn.start):.3f} <NA> <NA> {turn.speaker} <NA> <NA>"
        for turn in turns
    ]
    return "".join(line + "\n" for line in lines)
