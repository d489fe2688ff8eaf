"""Reading the Dockerfiles: their final CMD, ENV and pip installs, for the deployment tests."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import REPO_ROOT

DOCKERFILES = ("Dockerfile", "Dockerfile.transcription", "Dockerfile.diarization", "Dockerfile.orchestrator")


@dataclass(frozen=True)
class Image:
    path: Path
    text: str

    def instructions(self) -> list[tuple[str, str]]:
        """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
        joined = re.sub(r"\\\n", " ", self.text)
        result = []
        for line in joined.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                keyword, _, rest = stripped.partition(" ")
                result.append((keyword.upper(), rest.strip()))
        return result

    def final_stage(self) -> list[tuple[str, str]]:
        instructions = self.instructions()
        last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
        return instructions[last_from:]

    def command(self) -> list[str]:
        return json.loads([rest for keyword, rest in self.final_stage() if keyword == "CMD"][-1])

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for keyword, rest in self.final_stage():
            if keyword == "ENV":
                for item in shlex.split(rest):
                    name, _, value = item.partition("=")
                    values[name] = value
        return values

    def pip_installs(self) -> list[str]:
        return [rest for keyword, rest in self.instructions() if keyword == "RUN" and "pip install" in rest]


def image(name: str) -> Image:
    path = REPO_ROOT / name
    return Image(path, path.read_text())
