"""A stand-in for RunPod's `/runsync`: each job runs at once through `run_job` over a servicer.

The endpoint is the first path segment (`{base}/transcription/runsync`); an endpoint named ""
serves every path. FAILED jobs are reported as RunPod reports them (`error` beside the output).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from parakeet_server.core.runpod_shim import run_job


@dataclass
class Runsync:
    """The stub's base URL and every job it ran: (endpoint, job input, output)."""

    base: str
    jobs: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)


@contextmanager
def runsync_stub(endpoints: Mapping[str, tuple[type[Any], Callable[..., Any]]]) -> Iterator[Runsync]:
    """Serve `endpoints` (name -> (request type, servicer method)) on a free loopback port."""
    runsync = Runsync(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            name = self.path.split("/")[1]
            request_type, servicer = endpoints[name] if name in endpoints else endpoints[""]
            job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            output = run_job({"id": "stub", **job}, request_type, servicer)
            runsync.jobs.append((name, job["input"], output))
            reply = (
                {"status": "FAILED", "error": output["error"], "output": output}
                if "error" in output
                else {"status": "COMPLETED", "output": output}
            )
            body = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runsync.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield runsync
    finally:
        server.shutdown()
        server.server_close()
