"""URL fetching that cannot be turned against the host: schemes, internal addresses, redirects, caps."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator

import pytest

from parakeet_server.core.errors import InvalidRequest, LimitExceeded
from parakeet_server.core.fetch import FetchPolicy, fetch_bytes

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


# -- IPv6 forms that carry an IPv4 address (issue #14, item 4) ----------------------------------

NON_PUBLIC = "resolves to a non-public address; only public http(s) URLs are fetched"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection fetch_bytes opens (or tries to), recorded instead of made."""
    import urllib3.connection

    from parakeet_server.core import fetch

    opened: list[object] = []

    def refuse(*args: object, **kwargs: object) -> object:
        opened.append(args)
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(fetch, "_pool", refuse)
    monkeypatch.setattr(urllib3.connection.connection, "create_connection", refuse)
    return opened


@pytest.mark.parametrize(
    ("url", "embedded"),
    [
        # NAT64, well-known prefix 64:ff9b::/96 (RFC 6052): the IPv4 is the last 32 bits
        ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "169.254.169.254"),
        ("http://[64:ff9b::169.254.169.254]/latest/meta-data/", "169.254.169.254"),
        ("http://[64:FF9B::A9FE:A9FE]/", "169.254.169.254"),
        ("http://[0064:ff9b:0000:0000:0000:0000:a9fe:a9fe]:80/", "169.254.169.254"),
        ("http://[64:ff9b::a00:1]/a.wav", "10.0.0.1"),
        ("http://[64:ff9b::10.0.0.1]:8080/a.wav", "10.0.0.1"),
        ("http://[64:ff9b::7f00:1]:9/a.wav", "127.0.0.1"),
        ("https://[64:Ff9B::127.0.0.1]/a.wav", "127.0.0.1"),
        ("http://[64:ff9b::c0a8:1]/a.wav", "192.168.0.1"),
        ("http://[64:ff9b::6440:1]/a.wav", "100.64.0.1"),
        ("http://[64:ff9b::e000:1]/a.wav", "224.0.0.1"),
        # NAT64 local-use 64:ff9b:1::/48 (RFC 8215): any RFC 6052 position that is not public
        ("http://[64:ff9b:1::a00:1]/a.wav", "0.0.0.0"),
        ("http://[64:ff9b:1:a00:0:100:808:808]/a.wav", "10.0.0.1"),  # /48 position: 10.0.0.1
        # 6to4, 2002::/16: the IPv4 follows the prefix
        ("http://[2002:7f00:1::1]:9/a.wav", "127.0.0.1"),
        ("http://[2002:A9FE:A9FE::]/latest/meta-data/", "169.254.169.254"),
        ("http://[2002:c0a8:1:0:0:0:0:1]/a.wav", "192.168.0.1"),
        # IPv4-compatible ::/96 (deprecated): ::a.b.c.d
        ("http://[::7f00:1]:9/a.wav", "127.0.0.1"),
        ("http://[::127.0.0.1]:9/a.wav", "127.0.0.1"),
        ("http://[::a9fe:a9fe]/latest/meta-data/", "169.254.169.254"),
        ("http://[0:0:0:0:0:0:10.1.2.3]/a.wav", "10.1.2.3"),
        # IPv4-mapped ::ffff:0:0/96 and IPv4-translated ::ffff:0:0:0/96
        ("http://[::ffff:a9fe:a9fe]/latest/meta-data/", "169.254.169.254"),
        ("http://[::FFFF:169.254.169.254]/", "169.254.169.254"),
        ("http://[::ffff:0:a9fe:a9fe]/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:0:127.0.0.1]:9/a.wav", "127.0.0.1"),
        # Teredo 2001::/32: server IPv4 in bits 32-63, client IPv4 obfuscated (inverted) in the last 32
        ("http://[2001:0:a9fe:a9fe::f7f7:f7f7]/", "169.254.169.254"),  # server metadata, client 8.8.8.8
        ("http://[2001:0:808:808::f5ff:fffe]/", "10.0.0.1"),  # client 10.0.0.1
        ("http://[2001:0:808:808:8000:ffff:80ff:fffe]:9/", "127.0.0.1"),  # client 127.0.0.1
    ],
)
def test_ipv6_forms_carrying_an_internal_ipv4_are_refused_before_connecting(
    url: str, embedded: str, connections: list[object]
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        fetch_bytes(url, FetchPolicy())
    message = raised.value.message
    assert NON_PUBLIC in message
    assert message.endswith(f"carries the IPv4 address {embedded}"), message
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:9/a.wav",
        "http://[::]:9/a.wav",
        "http://[fe80::1%25lo]:9/a.wav",  # a zone id (RFC 6874 spelling)
        "http://[fe80::1%lo]:9/a.wav",
        "http://[fc00::1]/a.wav",
        "http://[ff02::1]/a.wav",
        "http://[64:ff9b:2::1]/a.wav",  # reserved space next to the NAT64 prefixes
        "http://[100::1]/a.wav",  # discard-only
        "http://[2001:db8::1]/a.wav",  # documentation
    ],
)
def test_non_public_ipv6_addresses_are_refused_before_connecting(url: str, connections: list[object]) -> None:
    with pytest.raises(InvalidRequest) as raised:
        fetch_bytes(url, FetchPolicy())
    assert NON_PUBLIC in raised.value.message
    assert "carries" not in raised.value.message
    assert connections == []


def test_the_message_names_the_host_the_url_gave() -> None:
    with pytest.raises(InvalidRequest) as raised:
        fetch_bytes("http://[64:ff9b::169.254.169.254]/latest/meta-data/", FetchPolicy())
    assert raised.value.message == (
        "the audio URL's host '64:ff9b::169.254.169.254' resolves to a non-public address; only public "
        "http(s) URLs are fetched (operators can allow hosts with PARAKEET_FETCH_ALLOW); "
        "64:ff9b::a9fe:a9fe carries the IPv4 address 169.254.169.254"
    )


@pytest.mark.parametrize(
    ("address", "verdict"),
    [
        # public IPv4 inside a transition form: reachable, as it is on IPv6-only networks with NAT64
        ("64:ff9b::808:808", None),
        ("64:ff9b::8.8.4.4", None),
        ("64:ff9b:1:808:8:808:808:808", None),  # every RFC 6052 position holds 8.8.8.8
        ("2002:808:808::1", None),
        ("::ffff:8.8.8.8", None),
        ("::ffff:0:8.8.8.8", None),
        ("2001:0:808:808::f7f7:f7f7", None),  # Teredo, server and client 8.8.8.8
        ("2001:4860:4860::8888", None),  # plain global unicast
        # local-use NAT64: one non-public position is enough (/96 here, then /64)
        (
            "64:ff9b:1:808:8:808:a9fe:a9fe",
            "64:ff9b:1:808:8:808:a9fe:a9fe carries the IPv4 address 169.254.169.254",
        ),
        ("64:ff9b:1:808:a:0:108:808", "64:ff9b:1:808:a:0:108:808 carries the IPv4 address 10.0.0.1"),
        ("fe80::1%eth0", ""),
        ("fe80::a9fe:a9fe%1", ""),
        ("::1", ""),
        ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe carries the IPv4 address 169.254.169.254"),
    ],
)
def test_refusal_judges_the_embedded_ipv4(address: str, verdict: str | None) -> None:
    assert FetchPolicy(allow="").refusal("host", ipaddress.ip_address(address)) == verdict


@pytest.mark.parametrize(
    ("allow", "address", "permitted"),
    [
        # an allow-listed IPv4 network also covers that network reached through NAT64, 6to4, mapping
        ("10.0.0.0/8", "64:ff9b::a00:1", True),
        ("10.0.0.0/8", "::ffff:10.0.0.1", True),
        ("10.0.0.0/8", "2002:a00:1::1", True),
        ("10.0.0.0/8", "64:ff9b::a9fe:a9fe", False),
        ("10.0.0.0/8", "64:ff9b::7f00:1", False),
        ("10.20.0.0/16", "64:ff9b::a15:1", False),  # 10.21.0.1: outside the allowed network
        ("10.20.0.5", "64:ff9b::a14:5", True),
        # the IPv6 address or network itself, and the host name, allow it whatever it carries
        ("64:ff9b::/96", "64:ff9b::a9fe:a9fe", True),
        ("64:ff9b::a00:1", "64:ff9b::a00:1", True),
        ("64:ff9b::a00:1", "64:ff9b::a00:2", False),
        ("host", "64:ff9b::a9fe:a9fe", True),
        ("HOST", "2002:7f00:1::1", True),
        ("other.host", "2002:7f00:1::1", False),
    ],
)
def test_the_allow_list_still_applies(allow: str, address: str, permitted: bool) -> None:
    assert FetchPolicy(allow=allow).permits("host", ipaddress.ip_address(address)) is permitted


def test_the_allow_list_applies_to_embedded_addresses_end_to_end(
    monkeypatch: pytest.MonkeyPatch, connections: list[object]
) -> None:
    """An allow-listed NAT64 address gets as far as connecting (recorded here, not made)."""
    monkeypatch.setenv("PARAKEET_FETCH_ALLOW", "10.20.0.0/16")
    with pytest.raises(AssertionError, match="a connection was attempted"):
        fetch_bytes("http://[64:ff9b::10.20.0.5]/a.wav", FetchPolicy())
    assert len(connections) == 1
    with pytest.raises(InvalidRequest, match=r"carries the IPv4 address 10\.21\.0\.5$"):
        fetch_bytes("http://[64:ff9b::10.21.0.5]/a.wav", FetchPolicy())
    assert len(connections) == 1
