"""Where model weights come from: a local path, a local Hugging Face cache, or (last) the Hub.

A worker must start without the network when its weights are already local: in RunPod's
cached-model store (`/runpod-volume/huggingface-cache/hub`, configurable with RUNPOD_HF_CACHE) or
the usual hub cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). Each repository is
looked up in every cache before anything is fetched, and when something is missing the error
names every missing repository at once, with what to do about it (accept gated conditions, set
a token, or download while online), instead of the first stack trace the Hub client throws.

Environment variables are read on every call, not at import, so a process (or a test) can point
the caches elsewhere before loading.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from parakeet_server.core.errors import PreconditionFailed

log = logging.getLogger(__name__)

RUNPOD_CACHE_ENV = "RUNPOD_HF_CACHE"
RUNPOD_CACHE_DEFAULT = "/runpod-volume/huggingface-cache/hub"


def hub_token() -> str | None:
    """The Hugging Face token: HUGGINGFACE_ACCESS_TOKEN (RunPod's name) first, then HF_TOKEN."""
    return os.environ.get("HUGGINGFACE_ACCESS_TOKEN") or os.environ.get("HF_TOKEN") or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_repo_id(name: str) -> bool:
    """'org/name' that is not an existing local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists()


def primary_cache() -> Path:
    """Where the Hub client caches (and where downloads go)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cache_dirs() -> list[Path]:
    """Every hub cache to search: RunPod's model store first, then the process's own."""
    runpod = Path(os.environ.get(RUNPOD_CACHE_ENV) or RUNPOD_CACHE_DEFAULT).expanduser()
    return list(dict.fromkeys([runpod, primary_cache()]))


@dataclass(frozen=True)
class RepoFile:
    """A file needed from a Hub repository (its presence marks a usable snapshot)."""

    repo_id: str
    filename: str
    revision: str | None = None


def _snapshots(folder: Path, revision: str | None) -> Iterable[Path]:
    """Candidate snapshot dirs of one cached repo: the ref's commit first, then any other."""
    snapshots = folder / "snapshots"
    ref = folder / "refs" / (revision or "main")
    if ref.is_file():
        yield snapshots / ref.read_text().strip()
    if revision:
        yield snapshots / revision  # a commit hash given as the revision
        return
    # RunPod's store (and copies made by hand) may hold a snapshot without refs/main.
    if snapshots.is_dir():
        yield from sorted(snapshots.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)


def find_snapshot(need: RepoFile) -> Path | None:
    """The local snapshot directory of `need.repo_id` that holds `need.filename`, if any."""
    folder_name = "models--" + need.repo_id.replace("/", "--")
    for cache in cache_dirs():
        folder = cache / folder_name
        if not folder.is_dir():
            continue
        for snapshot in _snapshots(folder, need.revision):
            if (snapshot / need.filename).is_file():
                return snapshot
    return None


def _accept_list(repos: Iterable[str]) -> str:
    return " and ".join(f"https://hf.co/{repo}" for repo in repos)


def resolve(
    needs: Sequence[RepoFile],
    token: str | None = None,
    gated: Collection[str] = (),
    allow_patterns: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Local snapshot dirs for every need, by repo id; downloads what is missing unless offline.

    `gated` names the repositories whose conditions an account must accept (so a missing token is
    reported before any download). Raises PreconditionFailed naming every repository that could
    not be made available.
    """
    found: dict[str, Path] = {}
    missing: list[RepoFile] = []
    for need in needs:
        snapshot = find_snapshot(need)
        if snapshot is None:
            missing.append(need)
        else:
            found[need.repo_id] = snapshot
    if not missing:
        return found
    repos = list(dict.fromkeys(need.repo_id for need in missing))
    gated_missing = [repo for repo in repos if repo in gated]
    accept = f" (after accepting the conditions of {_accept_list(gated_missing)})" if gated_missing else ""
    if offline():
        searched = ", ".join(str(path) for path in cache_dirs())
        raise PreconditionFailed(
            f"{', '.join(repos)} not found in the local Hugging Face caches ({searched}) and HF_HUB_OFFLINE "
            f"is set: download {'it' if len(repos) == 1 else 'them'} into one of those caches{accept}, "
            f"e.g. `hf download {repos[0]}`, or unset HF_HUB_OFFLINE",
            reason="MODEL_NOT_LOADED",
        )
    token = token or hub_token() or _stored_token()
    if gated_missing and token is None:
        raise PreconditionFailed(
            f"no Hugging Face token to download {', '.join(repos)}: accept the conditions of "
            f"{_accept_list(gated_missing)} and set HUGGINGFACE_ACCESS_TOKEN (or HF_TOKEN) to a token of that account",
            reason="MODEL_NOT_LOADED",
        )
    return {**found, **_download(missing, token, allow_patterns)}


def _stored_token() -> str | None:
    """A token saved by `hf auth login`, which the Hub client would use too."""
    from huggingface_hub import get_token

    return get_token()


def _download(
    needs: Sequence[RepoFile], token: str | None, allow_patterns: Sequence[str] | None
) -> dict[str, Path]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    found: dict[str, Path] = {}
    not_accepted: list[str] = []
    refused: list[str] = []
    failed: list[str] = []
    attempted: set[str] = set()
    for need in needs:
        if need.repo_id in attempted:
            continue
        attempted.add(need.repo_id)
        log.info("downloading %s from the Hugging Face Hub", need.repo_id)
        try:
            snapshot = Path(
                snapshot_download(
                    need.repo_id,
                    revision=need.revision,
                    cache_dir=primary_cache(),
                    token=token,
                    allow_patterns=list(allow_patterns) if allow_patterns else None,
                )
            )
        except GatedRepoError:
            not_accepted.append(need.repo_id)
            continue
        except RepositoryNotFoundError:
            refused.append(need.repo_id)
            continue
        except HfHubHTTPError as error:
            response = getattr(error, "response", None)
            status = getattr(response, "status_code", None)
            (refused if status in (401, 403) else failed).append(need.repo_id)
            continue
        except Exception as error:  # network down, disk full, ...: the message says which repo
            log.warning("downloading %s failed: %s", need.repo_id, error)
            failed.append(need.repo_id)
            continue
        if not (snapshot / need.filename).is_file():
            failed.append(need.repo_id)
            continue
        found[need.repo_id] = snapshot
    problems = []
    if not_accepted:
        problems.append(
            f"the Hugging Face account of the token has not accepted the conditions of "
            f"{_accept_list(not_accepted)}: accept them there"
        )
    if refused:
        problems.append(
            f"the Hugging Face Hub refused {', '.join(refused)} (missing, private, or the token in "
            f"HUGGINGFACE_ACCESS_TOKEN is invalid); check the name and the token"
        )
    if failed:
        problems.append(
            f"could not download {', '.join(failed)} from the Hugging Face Hub (network?); see the server "
            f"log, or place a copy in {primary_cache()}"
        )
    if problems:
        raise PreconditionFailed("; ".join(problems), reason="MODEL_NOT_LOADED")
    return found
