"""An upload over the limit is answered 413 with OpenAI's error body, whichever client sends it.

The gateway refuses before the orchestrator is called, so these tests point it at a port where
nothing listens: a request that got past the limit would come back 503, not 413. The bodies are
20 MB, far more than loopback's socket buffers hold, so a server that answered without reading
them would leave the client writing into a closed connection.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message

import httpx
import openai
import pytest
import requests
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.gateway.middleware import TRANSCRIPTIONS_PATH, UploadLimit, UploadTooLarge
from tests.gateway.conftest import serve_http
from tests.support.servers import free_port

LIMIT = 1000
UPLOAD = bytes(20 * 1024 * 1024)
BOUNDARY = "uploadlimittest"
BODY = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
    + UPLOAD
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)
REFUSAL = {
    "message": f"the upload is larger than this server's limit of {LIMIT} bytes (0.0 MiB)",
    "type": "invalid_request_error",
    "param": "file",
    "code": "resource_exhausted",
    "reason": "PAYLOAD_TOO_LARGE",
}

# Each client sends the 20 MB upload with `Connection: close` (urllib always does) and returns
# (status, headers, JSON body) of the answer.
Answer = tuple[int, httpx.Headers | Message | requests.structures.CaseInsensitiveDict[str], object]


def with_urllib(url: str) -> Answer:
    request = urllib.request.Request(
        url + TRANSCRIPTIONS_PATH,
        data=BODY,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    return raised.value.code, raised.value.headers, httpx.Response(200, content=raised.value.read()).json()


def with_requests(url: str) -> Answer:
    response = requests.post(
        url + TRANSCRIPTIONS_PATH,
        files={"file": ("a.wav", UPLOAD)},
        headers={"connection": "close"},
        timeout=60,
    )
    return response.status_code, response.headers, response.json()


def with_httpx_streamed(url: str) -> Answer:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway counts the body as it comes
        for start in range(0, len(BODY), 256 * 1024):
            yield BODY[start : start + 256 * 1024]

    response = httpx.post(
        url + TRANSCRIPTIONS_PATH,
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}", "connection": "close"},
        timeout=60,
    )
    return response.status_code, response.headers, response.json()


def with_openai(url: str) -> Answer:
    client = openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="sk-x",
        max_retries=0,
        timeout=60,
        default_headers={"connection": "close"},
    )
    with pytest.raises(openai.APIStatusError) as raised:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", UPLOAD))
    assert raised.value.body == REFUSAL  # what the openai client makes of the body
    return raised.value.status_code, raised.value.response.headers, raised.value.response.json()


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gateway_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The gateway under each of uvicorn's HTTP implementations, its orchestrator unreachable."""
    settings = GatewayConfig(orchestrator=f"127.0.0.1:{free_port()}", max_upload_bytes=LIMIT)
    with serve_http(create_app(settings), http=request.param) as url:
        yield url


@pytest.mark.parametrize("send", [with_urllib, with_requests, with_httpx_streamed, with_openai])
def test_an_upload_over_the_limit_gets_the_413_not_a_connection_error(
    gateway_url: str, send: Callable[[str], Answer]
) -> None:
    status, headers, error = send(gateway_url)
    assert (status, error) == (413, {"error": REFUSAL})
    assert headers["connection"] == "close"


def test_a_client_waiting_for_100_continue_is_refused_before_sending_the_body(gateway_url: str) -> None:
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {TRANSCRIPTIONS_PATH} HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)  # times out (the test fails) if the gateway waits for the body
            assert chunk, answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")  # no "100 Continue" first: the body is never asked for
    assert b"connection: close" in head.lower()
    assert httpx.Response(413, content=body).json() == {"error": REFUSAL}


def test_the_drain_stops_at_its_bound() -> None:
    """A body past `drain_bytes` is not read to its end: the limit bounds the gateway's work."""
    chunk = bytes(1000)
    reads = 0

    async def endless() -> AsgiMessage:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            await receive()

    limit = UploadLimit(reader, max_body_bytes=5000, drain_bytes=20_000)
    scope: Scope = {"type": "http", "path": TRANSCRIPTIONS_PATH, "headers": []}

    async def ignore(message: AsgiMessage) -> None:
        pass

    with pytest.raises(UploadTooLarge):
        asyncio.run(limit(scope, endless, ignore))
    assert reads == 21  # 6 reads to pass the limit, then drained to just past 20,000 bytes
