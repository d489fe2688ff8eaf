"""`parakeet batch`: an archive of files transcribed once each, resumably, on any backend.

items.py    inputs (files, directories, globs, manifests, URLs) -> BatchItem, and their requests
outputs.py  the output files (atomic) and results.jsonl (one row per input, kill -9 safe)
runner.py   the thread-pool run over a per-request backend (`Transcribe`), progress, summary
"""

from parakeet.batch.items import BatchInputError, BatchItem, expand, request_for
from parakeet.batch.outputs import FORMATS, RESULTS, Outputs, ResultRow, ResultsLog, parse_formats, pending
from parakeet.batch.runner import Job, ProgressBar, Summary, Transcribe, process, run

__all__ = [
    "FORMATS",
    "RESULTS",
    "BatchInputError",
    "BatchItem",
    "Job",
    "Outputs",
    "ProgressBar",
    "ResultRow",
    "ResultsLog",
    "Summary",
    "Transcribe",
    "expand",
    "parse_formats",
    "pending",
    "process",
    "request_for",
    "run",
]
