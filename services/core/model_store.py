"""Where model weights come from: a local path, a local Hugging Face cache, or (last) the Hub.

RunPod's cached-model store mounts Hugging Face caches at /runpod-volume/huggingface-cache/hub;
HF_HOME / HF_HUB_CACHE name the usual cache. A cold start looks in those first and downloads only
when no local copy exists and HF_HUB_OFFLINE is not set, so a worker with cached weights never
touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from services.core.errors import PreconditionFailed

RUNPOD_CACHE_ENV = "RUNPOD_HF_CACHE"
RUNPOD_CACHE_DEFAULT = "/runpod-volume/huggingface-cache/hub"


def hub_token() -> str | None:
    """The Hugging Face token: HUGGINGFACE_ACCESS_TOKEN (RunPod's name) first, then HF_TOKEN."""
    return os.environ.get("HUGGINGFACE_ACCESS_TOKEN") or os.environ.get("HF_TOKEN") or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dirs() -> list[Path]:
    """Hub caches to search, RunPod's model store first, in order, without duplicates."""
    candidates = [
        Path(os.environ.get(RUNPOD_CACHE_ENV, RUNPOD_CACHE_DEFAULT)),
        Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE),
    ]
    return list(dict.fromkeys(path for path in candidates if path.is_dir()))


def looks_like_repo_id(name: str) -> bool:
    """'org/name' that is not an existing local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists()


def cached_snapshot(repo_id: str, allow_patterns: Sequence[str] | None = None) -> Path | None:
    """The local snapshot directory of `repo_id` in any known cache, or None."""
    for cache in cache_dirs():
        try:
            return Path(
                snapshot_download(
                    repo_id,
                    cache_dir=cache,
                    local_files_only=True,
                    allow_patterns=list(allow_patterns) if allow_patterns else None,
                )
            )
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            continue
    return None


def resolve_snapshot(repo_id: str, allow_patterns: Sequence[str] | None = None) -> Path:
    """A local snapshot of `repo_id`: from a cache if present, else downloaded (unless offline)."""
    local = cached_snapshot(repo_id, allow_patterns)
    if local is not None:
        return local
    if offline():
        searched = ", ".join(str(path) for path in cache_dirs()) or "no cache directory exists"
        raise PreconditionFailed(
            f"{repo_id} is not in the local model cache ({searched}) and HF_HUB_OFFLINE is set; "
            f"download it into the cache or point the server at a local copy"
        )
    try:
        return Path(
            snapshot_download(
                repo_id,
                token=hub_token(),
                allow_patterns=list(allow_patterns) if allow_patterns else None,
            )
        )
    except GatedRepoError:
        raise PreconditionFailed(
            f"{repo_id} is gated: accept its conditions at https://hf.co/{repo_id} and set "
            "HUGGINGFACE_ACCESS_TOKEN to a token of that account"
        ) from None
    except RepositoryNotFoundError:
        raise PreconditionFailed(
            f"{repo_id} was not found on the Hugging Face Hub (or is private and no token was given)"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise PreconditionFailed(f"could not download {repo_id} ({type(error).__name__})") from None
