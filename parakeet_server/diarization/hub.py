"""The pyannote repositories: which are gated, what each pipeline needs, which files to fetch.

Finding them on disk (RunPod's model store, the hub caches) and downloading what is missing is
parakeet_server.core.model_store's job; this module only knows pyannote's side of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from parakeet_server.core import model_store
from parakeet_server.core.model_store import RepoFile

# Repositories whose conditions a Hugging Face account must accept before it can download them.
GATED = frozenset(
    {
        "pyannote/speaker-diarization-3.1",
        "pyannote/segmentation-3.0",
        "pyannote/speaker-diarization-community-1",
    }
)
# What a pipeline fetches besides itself, to name everything missing before its config is local.
# 3.1 lists exactly the repos its model card names (the community-1 PLDA is not one: #2044).
KNOWN_PIPELINES: Mapping[str, tuple[str, ...]] = {
    "pyannote/speaker-diarization-3.1": (
        "pyannote/speaker-diarization-3.1",
        "pyannote/segmentation-3.0",
        "pyannote/wespeaker-voxceleb-resnet34-LM",
    ),
    "pyannote/speaker-diarization-community-1": ("pyannote/speaker-diarization-community-1",),
}
# Files worth downloading from a pyannote repo (not the README's images or ONNX exports).
DOWNLOAD_PATTERNS = ["*.yaml", "*.yml", "*.bin", "*.npz", "*.safetensors", "*.json"]


def resolve(needs: Sequence[RepoFile], token: str | None) -> dict[str, Path]:
    """Local snapshots of pyannote repos (see model_store.resolve), gated ones named as such."""
    return model_store.resolve(needs, token, gated=GATED, allow_patterns=DOWNLOAD_PATTERNS)
