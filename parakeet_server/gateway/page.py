"""The live-captions page: `GET /` and its few static files, served from the package.

The page is plain HTML/JS/CSS (parakeet_server/gateway/static, no build step, no third-party
code). It needs no token to load; it asks the person for one and sends it with each API call.
Only the files named in `STATIC_FILES` are served, so no path from a URL ever reaches the file
system. A Content-Security-Policy keeps the page to its own origin (no CDN, no inline script).
"""

from __future__ import annotations

from pathlib import Path

import grpc
from fastapi import APIRouter
from fastapi.responses import FileResponse

from parakeet_server.gateway.errors import GatewayError

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"
# The files under /static/ and their media types; anything else is a 404.
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "audio-worklet.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # A new release's page is picked up at once; the files are small.
    "cache-control": "no-cache",
}

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The live-captions page."""
    return FileResponse(STATIC_DIR / INDEX, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    """One of the page's files, by name; a name not in STATIC_FILES is a 404."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise GatewayError.for_code(
            grpc.StatusCode.NOT_FOUND,
            f"no static file {name!r}; the page's files are {', '.join(sorted(STATIC_FILES))}",
        )
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=HEADERS)
