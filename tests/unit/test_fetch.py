"""URL fetching that cannot be turned against the host: schemes, internal addresses, redirects, caps."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from services.core.errors import InvalidRequest, LimitExceeded
from services.core.fetch import FetchPolicy, fetch_bytes

BODY = b"RIFF" + bytes(range(256)) * 40


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/audio.wav": (200, {}, BODY),
            "/to-audio": (302, {"Location": "/audio.wav"}, b""),
            "/to-private": (302, {"Location": "http://10.0.0.7/secret"}, b""),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/missing": (404, {}, b"nope"),
        }
        if self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(3)
            return
        if self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\0" * 65536)
            return
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


ALLOW_LOOPBACK = FetchPolicy(allow="127.0.0.1", read_timeout_s=1.0)


def test_an_allow_listed_host_is_fetched_and_redirects_followed(server: str) -> None:
    assert fetch_bytes(f"{server}/audio.wav", ALLOW_LOOPBACK) == BODY
    assert fetch_bytes(f"{server}/to-audio", ALLOW_LOOPBACK) == BODY


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a.wav",
        "http://localhost:9/a.wav",
        "http://10.1.2.3/a.wav",
        "http://192.168.0.10/a.wav",
        "http://172.16.5.4/a.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/a.wav",
        "http://[::ffff:127.0.0.1]:9/a.wav",
        "http://224.0.0.1/a.wav",
        "http://0.0.0.0/a.wav",
        "http://100.64.0.1/a.wav",
    ],
)
def test_internal_addresses_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(InvalidRequest, match="resolves to a non-public address"):
        fetch_bytes(url, FetchPolicy())


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata"])
def test_a_redirect_to_an_internal_address_is_refused(server: str, path: str) -> None:
    with pytest.raises(InvalidRequest, match="resolves to a non-public address"):
        fetch_bytes(f"{server}{path}", ALLOW_LOOPBACK)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.wav", "gopher://x/", "//nohost"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(InvalidRequest, match="must start with http:// or https://"):
        fetch_bytes(url, FetchPolicy())


def test_a_redirect_to_file_scheme_is_refused(server: str) -> None:
    with pytest.raises(InvalidRequest, match="must start with http:// or https://"):
        fetch_bytes(f"{server}/to-file", ALLOW_LOOPBACK)


def test_redirect_loops_end(server: str) -> None:
    with pytest.raises(InvalidRequest, match="redirected more than 5 times"):
        fetch_bytes(f"{server}/loop", ALLOW_LOOPBACK)


def test_http_errors_are_reported(server: str) -> None:
    with pytest.raises(InvalidRequest, match="HTTP 404"):
        fetch_bytes(f"{server}/missing", ALLOW_LOOPBACK)


def test_size_is_capped_by_content_length_and_while_streaming(server: str) -> None:
    small = FetchPolicy(allow="127.0.0.1", max_bytes=1000)
    with pytest.raises(LimitExceeded, match="serves 10244 bytes; the limit is 1000 bytes"):
        fetch_bytes(f"{server}/audio.wav", small)
    with pytest.raises(LimitExceeded, match="more than the limit of 1000 bytes"):
        fetch_bytes(f"{server}/endless", small)


def test_a_stalled_server_times_out(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="could not fetch the audio URL"):
        fetch_bytes(f"{server}/slow", ALLOW_LOOPBACK)
    assert time.monotonic() - started < 2.5


def test_unresolvable_hosts_are_invalid() -> None:
    with pytest.raises(InvalidRequest, match="cannot resolve"):
        fetch_bytes("http://no-such-host.invalid/a.wav", FetchPolicy())
