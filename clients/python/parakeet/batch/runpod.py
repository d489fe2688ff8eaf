"""`parakeet batch --runpod ENDPOINT_ID`: each file one job in the endpoint's queue.

`transcriber` returns the batch's `Transcribe` for a RunPod serverless endpoint running the
orchestrator worker: the request goes to POST /run as the job JSON every parakeet worker reads,
and /status is polled until the job ends, so `--concurrency N` threads keep N jobs queued and
RunPod scales its workers to them. What RunPod may answer differently a moment later (HTTP 429
with its Retry-After, 5xx, an unreachable API, a worker still warming up) is tried again with
backoff (`parakeet.runpod.Retry`); a job still running at the deadline is cancelled.

RunPod refuses a request body over 10 MB, so a local file whose base64 would not fit is refused
here, before it is encoded, with PAYLOAD_TOO_LARGE and what to do instead: give the file as an
https URL (a manifest's `url` column), which the worker fetches itself. URL inputs always go as
`audio.uri`, whatever their size.
"""

from __future__ import annotations

import os

from parakeet.batch.runner import Transcribe
from parakeet.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from parakeet.runpod import API_KEY_ENV, RUNPOD_MAX_PAYLOAD_BYTES, Retry, RunPodEndpoint, RunPodJobs
from parakeet.v1 import orchestrator_pb2

# Per HTTP request (and per job a worker failed with a retryable reason). The runner tries an
# item again on a retryable failure too, so this stays modest: a minute or so of RunPod trouble.
BATCH_RETRY = Retry(attempts=5, backoff_s=1.0, max_backoff_s=30.0)
ENDPOINT_URL_ENV = "RUNPOD_ENDPOINT_URL"
# The JSON around the base64 audio (field names, the other options): generous.
_ENVELOPE_BYTES = 4096


def transcriber(
    endpoint_id: str,
    api_key: str | None = None,
    *,
    url: str | None = None,
    max_wait_s: float = 3600.0,
    poll_interval_s: float = 1.0,
    retry: Retry = BATCH_RETRY,
) -> Transcribe:
    """The batch backend for one RunPod endpoint; safe to call from many threads at once.

    `endpoint_id` may also be the endpoint's base URL (a proxy, or a worker's local test API);
    `url` (default: env RUNPOD_ENDPOINT_URL) overrides https://api.runpod.ai/v2/ENDPOINT_ID.
    The key defaults to env RUNPOD_API_KEY and is required for RunPod's own API.
    `max_wait_s` bounds one job from its submission to its end, queueing included."""
    if endpoint_id.startswith(("http://", "https://")):
        endpoint_id, url = "", endpoint_id
    base = url if url is not None else os.environ.get(ENDPOINT_URL_ENV, "")
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    if not endpoint_id and not base:
        raise InvalidArgument("--runpod needs an endpoint id (or its base URL)")
    if not key and not base:
        raise FailedPrecondition(
            f"--runpod needs the RunPod API key: export {API_KEY_ENV}=...", reason="BACKEND_CREDENTIALS"
        )
    endpoint = RunPodEndpoint(endpoint_id, base)
    jobs = RunPodJobs(key, poll_interval_s=poll_interval_s, max_wait_s=max_wait_s, retry=retry)
    label = f"the RunPod endpoint {endpoint.base_url}"

    def transcribe(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
        check_payload(request)
        return jobs.call(endpoint, request, orchestrator_pb2.OrchestrateResponse, label=label, queued=True)

    return transcribe


def check_payload(request: orchestrator_pb2.OrchestrateRequest) -> None:
    """Refuse audio bytes RunPod would refuse as base64 JSON, before encoding them (PAYLOAD_TOO_LARGE)."""
    size = len(request.audio.content)
    encoded = 4 * ((size + 2) // 3) + _ENVELOPE_BYTES
    if encoded > RUNPOD_MAX_PAYLOAD_BYTES:
        raise ResourceExhausted(
            f"the file is {size / 1e6:.1f} MB, {encoded / 1e6:.1f} MB as a RunPod job's base64 JSON; "
            f"a job takes at most {RUNPOD_MAX_PAYLOAD_BYTES / 1e6:.0f} MB: put the file at an https URL "
            "and list that in a manifest (`url` column) so the worker fetches it, or transcribe it "
            "with --server or the embedded backend",
            reason="PAYLOAD_TOO_LARGE",
        )
