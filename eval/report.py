"""`make eval`'s report: corpora side by side, then by speaker count and by condition.

Why: one WER or DER over a whole corpus hides where the errors are; the same scores split by how
many people talk and by what happened to the audio (room, noise, codec) show it. This module only
lays out summaries (eval.run computes them), as text tables for people and one JSON document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eval.floors import Summary

# (summary key, label, shown as a percentage)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("wer", "WER", True),
    ("der", "DER", True),
    ("jer", "JER", True),
    ("wder", "WDER", True),
    ("speaker_count_exact", "count exact", True),
)
NUMBERS: tuple[tuple[str, str, bool], ...] = (
    ("files", "files", False),
    ("audio_minutes", "audio minutes", False),
)


def cell(summary: Summary | None, key: str, percent: bool) -> str:
    """One score as a person reads it: '4.03 %', a count, or '-' when not scored."""
    value = None if summary is None else summary.get(key)
    if value is None:
        return "-"
    if percent:
        return f"{float(value) * 100:.2f} %"
    return f"{value}"


def grid(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def side_by_side(corpora: Mapping[str, Summary]) -> str:
    """One row per score, one column per corpus (clean | realistic)."""
    names = list(corpora)
    rows = [["score", *names]]
    for key, label, percent in (*NUMBERS, *METRICS, ("real_time_factor", "real-time factor", False)):
        rows.append([label, *(cell(corpora[name], key, percent) for name in names)])
    return grid(rows)


def by_group(title: str, groups: Mapping[str, Mapping[str, Summary]], corpora: Sequence[str]) -> str:
    """One row per group (a speaker count, a condition); each cell holds every corpus's score, ' | '
    apart, in the order of `corpora` (a corpus without that group shows '-')."""
    rows = [[title, *(label for _, label, _ in (*NUMBERS[:1], *METRICS))]]
    for group, by_corpus in groups.items():
        line = [group]
        for key, _, percent in (*NUMBERS[:1], *METRICS):
            line.append(" | ".join(cell(by_corpus.get(name), key, percent) for name in corpora))
        rows.append(line)
    legend = f"each cell: {' | '.join(corpora)}\n" if len(corpora) > 1 else ""
    return legend + grid(rows)


def by_group_and_corpus(title: str, groups: Mapping[str, Mapping[str, Summary]]) -> str:
    """One row per group and corpus, for groups no two corpora share (a condition belongs to one)."""
    rows = [[title, "set", *(label for _, label, _ in (*NUMBERS[:1], *METRICS))]]
    for group, by_corpus in groups.items():
        for name, summary in by_corpus.items():
            rows.append(
                [group, name, *(cell(summary, key, percent) for key, _, percent in (*NUMBERS[:1], *METRICS))]
            )
    return grid(rows)


def document(
    sets: Sequence[tuple[str, Summary]],
    corpora: Mapping[str, Summary],
    by_speakers: Mapping[str, Mapping[str, Summary]],
    by_condition: Mapping[str, Mapping[str, Summary]],
    floors: Mapping[str, str],
    missed: Sequence[str],
) -> dict[str, object]:
    """Everything the text shows, for --json: rows per set, per corpus, per speaker count and condition."""
    return {
        "sets": dict(sets),
        "corpora": dict(corpora),
        "by_speaker_count": {group: dict(row) for group, row in by_speakers.items()},
        "by_condition": {group: dict(row) for group, row in by_condition.items()},
        "floors": dict(floors),
        "floors_missed": list(missed),
    }
