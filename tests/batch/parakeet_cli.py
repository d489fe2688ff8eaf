"""`python -m tests.batch.parakeet_cli ARGS`: the `parakeet` command for subprocess tests.

Where the installed metadata predates the embedded `orchestrator` entry point (an editable install
not re-run since pyproject.toml gained it), the entry is resolved from the source tree instead;
with the entry point installed this is exactly `parakeet ARGS`."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Any

from parakeet import cli


def register_embedded_batch_entry() -> None:
    """Make `_embedded_entry("orchestrator", ...)` find parakeet_server.embedded.orchestrator."""
    if entry_points(group=cli.EMBEDDED_GROUP, name="orchestrator"):
        return
    original = cli._embedded_entry

    def entry(name: str, *targets: str) -> Any:
        if name == "orchestrator":
            from parakeet_server.embedded import orchestrator

            return orchestrator
        return original(name, *targets)

    cli._embedded_entry = entry


if __name__ == "__main__":
    register_embedded_batch_entry()
    sys.exit(cli.main(sys.argv[1:]))
