"""Run by tests/client/test_standalone.py with the python of a venv holding only the client
distribution: what it can import, and the Python API against a live server.

    python standalone_client.py imports            -> {"modules": {...}, "distributions": [...]}
    python standalone_client.py call ADDRESS WAV   -> the responses as the RunPod JSON mapping
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

# What the server stack brings and the client must not need.
SERVER_ONLY = ("torch", "nemo", "pyannote", "fastapi", "uvicorn", "runpod", "av", "numpy", "parakeet_server")


def imports() -> dict[str, object]:
    return {
        "modules": {name: importlib.util.find_spec(name) is not None for name in SERVER_ONLY},
        "distributions": sorted(
            {
                str(dist.metadata["Name"]).lower().replace("_", "-")
                for dist in importlib.metadata.distributions()
            }
        ),
        "client": importlib.util.find_spec("parakeet").origin,
        "typed": sorted(
            path.name
            for path in Path(str(importlib.util.find_spec("parakeet").origin)).parent.rglob("*")
            if path.name == "py.typed" or path.suffix == ".pyi"
        ),
    }


def call(address: str, wav: str) -> dict[str, object]:
    from parakeet import AsyncParakeetClient, ParakeetClient, ParakeetError
    from parakeet.runpod import response_to_json

    with ParakeetClient(address, timeout=120) as client:
        diarized = client.transcribe(wav, diarize=True, speakers_optional=True, word_timestamps=True)
        untimed = client.transcribe_only(wav, timestamps=False, response_format="text")
        try:
            client.transcribe(b"not audio at all" * 50)
            refused: dict[str, object] = {}
        except ParakeetError as error:
            refused = {"type": type(error).__name__, "reason": error.reason, "retryable": error.retryable}

    async def health() -> str:
        async with AsyncParakeetClient(address, timeout=30) as client:
            return await client.health("parakeet.v1.OrchestratorService")

    return {
        "diarized": response_to_json(diarized),
        "untimed": response_to_json(untimed),
        "refused": refused,
        "health": asyncio.run(health()),
    }


if __name__ == "__main__":
    result = imports() if sys.argv[1] == "imports" else call(sys.argv[2], sys.argv[3])
    json.dump(result, sys.stdout)
