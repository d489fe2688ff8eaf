"""Batch fixtures: the synthesized archive (tests/support/batch_corpus.py), built once per session,
and the trained tiny TDT the backends load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing here may reach the Hugging Face Hub; set before huggingface_hub reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.support.batch_corpus import BatchCorpus, build_batch_corpus
from tests.support.servers import REPO_ROOT

TINY_TDT = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"


@pytest.fixture(scope="session")
def batch_corpus(tmp_path_factory: pytest.TempPathFactory) -> BatchCorpus:
    """100 files: 97 short espeak utterances in set_a/ and set_b/, 3 corrupt ones in broken/."""
    return build_batch_corpus(tmp_path_factory.mktemp("batch-corpus"))


@pytest.fixture(scope="session")
def tiny_tdt() -> Path:
    return TINY_TDT
