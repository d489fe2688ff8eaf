"""Two ASGI middlewares of the gateway: request ids, and the upload limit enforced while reading.

Both are plain ASGI (not BaseHTTPMiddleware) so they see the raw `receive`/`send` channels: the
limit can stop a body mid-stream, and the id lands on every response, errors included.
"""

from __future__ import annotations

import re
import uuid
from typing import NoReturn

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parakeet_server.core.logs import REQUEST_ID_KEY, request_scope

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
# A request id the client sends is kept (and forwarded) only when it is a plain token.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class UploadTooLarge(HTTPException):
    """Raised from `receive` while the body is read; an HTTPException, so FastAPI passes it on as is."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class UploadLimit:
    """Refuses a transcription body over `max_body_bytes`, buffering none of it.

    A declared Content-Length over the limit is refused at the first read; a chunked body is
    counted as it arrives. The exact per-file limit is checked again once the form is parsed.

    Before the 413 goes out, the rest of the body is read and discarded, up to `drain_bytes` in
    all: a server that answers and closes while the client is still sending leaves unread bytes
    behind, the kernel then resets the connection, and a client that stops at its failed write
    (Python's urllib even on loopback; more of them over real networks, where the reset can
    overtake the answer) reports a reset or a broken pipe instead of the 413. The refusal also
    says `Connection: close`, so no client reuses the connection. A body larger than
    `drain_bytes` is not drained: the answer is the same 413, but such a client may see the
    reset instead.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, drain_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TRANSCRIPTIONS_PATH:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        received = int(declared) if declared.isdigit() else 0
        # A client that asked to be told first (Expect: 100-continue) sends nothing until the first
        # read: refused before it, it never sends the body at all, so there is nothing to drain.
        waits_to_send = headers.get(b"expect", b"").lower() == b"100-continue"
        refused = False

        async def refuse(more_body: bool) -> NoReturn:
            nonlocal refused
            if not refused:
                refused = True
                drained = received  # declared, or counted so far
                while more_body and drained <= self.drain_bytes:
                    message = await receive()
                    if not declared.isdigit():
                        drained += len(message.get("body", b""))
                    more_body = message["type"] == "http.request" and message.get("more_body", False)
            raise UploadTooLarge

        async def limited() -> Message:
            nonlocal received
            if refused or received > self.max_body_bytes:  # a declared length over the limit
                await refuse(more_body=not waits_to_send)
            message = await receive()
            if message["type"] == "http.request" and not declared.isdigit():
                received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                await refuse(more_body=message.get("more_body", False))
            return message

        async def send_refusal(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        await self.app(scope, limited, send_refusal)


class RequestIds:
    """Gives every request an id (the client's x-request-id when usable), echoed in the response.

    The id scopes the gateway's log lines (parakeet_server.core.logs) and is forwarded to the
    orchestrator, so one id finds a request in every service's log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(REQUEST_ID_KEY.encode(), b"").decode("latin-1")
        request_id = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_KEY] = request_id
            await send(message)

        with request_scope(request_id):
            await self.app(scope, receive, send_with_id)
