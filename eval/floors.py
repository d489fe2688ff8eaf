"""The floors `make eval --check-floors` holds, one set per corpus, in one place.

Why a module of its own: the clean floors are the issue's targets, the realistic ones are what the
stack reaches today on the realistic corpus (eval/realistic.py), so a change can only keep or improve
them. Whoever improves the diarizer or the ASR raises REALISTIC here, towards REALISTIC_TARGETS.
"""

from __future__ import annotations

from dataclasses import dataclass

Summary = dict[str, float | int | None]

# The scores held below a ceiling (errors), and the one held above a minimum (a share right).
CEILINGS = ("wer", "der", "wder")
COUNT = "speaker_count_exact"


@dataclass(frozen=True)
class Floors:
    """Error ceilings (WER, DER, WDER) and the least share of recordings whose speaker count is exact."""

    wer: float = 0.10
    der: float = 0.10
    wder: float = 0.05
    speaker_count_exact: float | None = None

    def failures(self, summary: Summary) -> list[str]:
        found = []
        for name in CEILINGS:
            value, floor = summary.get(name), getattr(self, name)
            if value is not None and float(value) > floor:
                found.append(f"{name.upper()} {float(value):.3f} is above the floor {floor:.2f}")
        exact = summary.get(COUNT)
        if self.speaker_count_exact is not None and exact is not None and exact < self.speaker_count_exact:
            found.append(
                f"speaker count exact {float(exact):.3f} is below the floor {self.speaker_count_exact:.2f}"
            )
        return found

    def describe(self) -> str:
        parts = [f"{name.upper()} <= {getattr(self, name) * 100:g} %" for name in CEILINGS]
        if self.speaker_count_exact is not None:
            parts.append(f"speaker count exact >= {self.speaker_count_exact * 100:g} %")
        return ", ".join(parts)


# The floors for the offline fixture stack on clean synthesized held-out speech.
CLEAN = Floors()

# Measured on the realistic test split with the offline fixture stack (tiny TDT + offline diarizer),
# count unknown: `make eval` (24 conversations of 1-2 minutes) scored WER 31.37 %, DER 15.76 %,
# WDER 6.81 %, 17 of 24 counts exact (70.8 %) with the segmentation speech gate (session 9; session
# 8: DER 16.50 %, WDER 6.69 %; before overlap and CAM++: DER 23.13 %, WDER 11.36 %, 58.3 %);
# `--quick` (6 of 1 minute, one per speaker count 1-6) scored DER 11.8 %, WDER 7.4 %, 4 of 6 counts.
# Rounded up (counts down) to the point so both hold; raise them as the stack improves (docs/accuracy.md).
REALISTIC = Floors(wer=0.32, der=0.16, wder=0.08, speaker_count_exact=0.66)

# What issue #18 asks on the realistic set; not reached yet (docs/accuracy.md says by how much).
REALISTIC_TARGETS = Floors(wer=0.10, der=0.15, wder=0.05, speaker_count_exact=0.80)
