"""Times as every response carries them: seconds rounded to the millisecond.

Frame arithmetic (35 frames of 0.08 s) and sample counts leave binary noise such as
2.8000000000000003 that every JSON rendering would show; times are rounded where they are made.
"""

from __future__ import annotations


def whole_ms(seconds: float) -> float:
    """`seconds` rounded to the millisecond."""
    return round(seconds, 3)
