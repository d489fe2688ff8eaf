"""Fetch audio from an http(s) URL without letting a request aim the server at internal hosts.

Every hop (the first request and each redirect) resolves the host, refuses loopback, private,
link-local (cloud metadata at 169.254.169.254 included), multicast and other non-public
addresses unless the deployment allow-lists them, and then connects to the address it checked,
so DNS cannot be re-pointed between the check and the connection. Size is capped while
streaming and every step has a timeout.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

import certifi
import urllib3
from urllib3.exceptions import HTTPError, LocationParseError

from parakeet_server.core.errors import InvalidRequest, LimitExceeded

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 256 * 1024
ALLOW_ENV = "PARAKEET_FETCH_ALLOW"


def _parse_allowed(entries: str) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in filter(None, (part.strip() for part in entries.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower())
    return frozenset(names), tuple(networks)


# IPv6 forms that carry an IPv4 address; a connection to one of them reaches (or is translated
# to) that IPv4 host, so the IPv4 address is what is judged.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # the host's own IPv4 stack
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 7915
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated, RFC 4291: ::a.b.c.d
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 is the last 32 bits
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: operator-chosen prefix length
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056: the relay router's IPv4
# Teredo (2001::/32, RFC 4380) carries a server and an obfuscated client IPv4: `.teredo`.
# Public IPv6 hosts live in global unicast space; the rest of the IPv6 space is reserved.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


# Where the IPv4 address sits after a NAT64 prefix of each length (RFC 6052 section 2.2): octet
# 8 (bits 64-71, the "u" octet) is always zero and skipped.
_RFC6052_OCTETS = {
    32: (4, 5, 6, 7),
    40: (5, 6, 7, 9),
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
    96: (12, 13, 14, 15),
}


def _rfc6052_ipv4(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    octets = address.packed
    return ipaddress.IPv4Address(bytes(octets[i] for i in _RFC6052_OCTETS[prefix_length]))


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 address(es) an IPv6 transition address carries; None for any other address.

    For the NAT64 local-use prefix the operator picks where the IPv4 address sits (a /48, /56,
    /64 or /96 translation prefix), so every possible position is returned."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in _IPV4_MAPPED or address in _IPV4_TRANSLATED:
        return (ipaddress.IPv4Address(address.packed[12:]),)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are themselves
        return (ipaddress.IPv4Address(address.packed[12:]),)
    if address in _NAT64_WELL_KNOWN:
        return (_rfc6052_ipv4(address, 96),)
    if address in _NAT64_LOCAL_USE:
        return tuple(_rfc6052_ipv4(address, length) for length in (48, 56, 64, 96))
    if address in _SIX_TO_FOUR:
        return (ipaddress.IPv4Address(address.packed[2:6]),)
    if address.teredo is not None:  # 2001::/32: (server, client), the client de-obfuscated
        return address.teredo
    return None


def _is_public(address: IPAddress) -> bool:
    if address.is_multicast or not address.is_global:
        return False
    return isinstance(address, ipaddress.IPv4Address) or address in _GLOBAL_UNICAST


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and the allow-list; `allow` holds host names, IPs or CIDRs reachable despite being internal."""

    max_bytes: int = 512 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 300.0
    max_redirects: int = 5
    allow: str = field(default_factory=lambda: os.environ.get(ALLOW_ENV, ""))

    def permits(self, host: str, address: IPAddress) -> bool:
        return self.refusal(host, address) is None

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """None when `host` may be fetched at `address`, else what is wrong with it ("" when the
        address itself is non-public, else which IPv4 address inside it is).

        An IPv6 address that embeds IPv4 addresses (IPv4-mapped, -translated or -compatible,
        NAT64, 6to4, Teredo) is judged by those: each must be public or allow-listed. The
        allow-list matches the host name, the address, or (for these forms) the IPv4 inside."""
        names, networks = _parse_allowed(self.allow)
        if host.lower() in names or _allowed(address, networks):
            return None
        inner = embedded_ipv4(address)
        if inner is None:
            return None if _is_public(address) else ""
        for ipv4 in inner:
            if not (_allowed(ipv4, networks) or _is_public(ipv4)):
                return f"{address} carries the IPv4 address {ipv4}"
        return None


def _allowed(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def _resolve(host: str, port: int, policy: FetchPolicy) -> str:
    """The address to connect to; every address the name resolves to must be permitted."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidRequest(
            f"cannot resolve the audio URL's host {host!r}", reason="URL_FETCH_FAILED"
        ) from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    refusals = [reason for reason in (policy.refusal(host, a) for a in addresses) if reason is not None]
    if refusals or not addresses:
        detail = next((f"; {reason}" for reason in refusals if reason), "")
        raise InvalidRequest(
            f"the audio URL's host {host!r} resolves to a non-public address; "
            f"only public http(s) URLs are fetched (operators can allow hosts with {ALLOW_ENV}){detail}",
            reason="URL_FORBIDDEN",
        )
    return str(addresses[0])


def _pool(
    scheme: str, host: str, address: str, port: int, policy: FetchPolicy, budget_s: float
) -> urllib3.HTTPConnectionPool:
    # No single socket wait may outlast what is left of the whole download's budget.
    budget_s = max(budget_s, 0.05)
    timeout = urllib3.Timeout(
        connect=min(policy.connect_timeout_s, budget_s), read=min(policy.read_timeout_s, budget_s)
    )
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)


def fetch_bytes(url: str, policy: FetchPolicy | None = None) -> bytes:
    """GET `url` (following permitted redirects) and return the body, at most policy.max_bytes."""
    policy = policy or FetchPolicy()
    started = time.monotonic()
    for _hop in range(policy.max_redirects + 1):
        try:
            parsed = urllib3.util.parse_url(url)
        except LocationParseError:
            raise InvalidRequest("the audio URL is not a valid URL", reason="URL_FORBIDDEN") from None
        scheme = (parsed.scheme or "").lower()
        if scheme not in ("http", "https") or not parsed.host:
            raise InvalidRequest("the audio URL must start with http:// or https://", reason="URL_FORBIDDEN")
        host = parsed.host.strip("[]")
        port = parsed.port or (443 if scheme == "https" else 80)
        address = _resolve(host, port, policy)
        headers = {"Host": parsed.netloc or host, "User-Agent": "parakeet-grpc/0.1", "Accept": "*/*"}
        try:
            budget_s = policy.total_timeout_s - (time.monotonic() - started)
            with _pool(scheme, host, address, port, policy, budget_s) as pool:
                response = pool.urlopen(
                    "GET", parsed.request_uri, headers=headers, redirect=False, preload_content=False
                )
                try:
                    if response.status in _REDIRECTS and response.headers.get("Location"):
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise InvalidRequest(
                            f"fetching the audio URL failed: HTTP {response.status}",
                            reason="URL_FETCH_FAILED",
                        )
                    return _read_capped(response, policy, started)
                finally:
                    response.release_conn()
        except HTTPError as error:
            if time.monotonic() - started >= policy.total_timeout_s:
                raise InvalidRequest(_too_slow(policy), reason="URL_FETCH_FAILED") from None
            raise InvalidRequest(
                f"could not fetch the audio URL ({type(error).__name__})", reason="URL_FETCH_FAILED"
            ) from None
    raise InvalidRequest(
        f"the audio URL redirected more than {policy.max_redirects} times", reason="URL_FETCH_FAILED"
    )


def _read_capped(response: urllib3.BaseHTTPResponse, policy: FetchPolicy, started: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise LimitExceeded(
            f"the audio URL serves {declared} bytes; the limit is {policy.max_bytes} bytes",
            reason="PAYLOAD_TOO_LARGE",
        )
    body = bytearray()
    # read1 returns whatever one socket read brings, so a body that trickles a byte at a time
    # (never slow enough for the read timeout) still meets the budget check between reads.
    while chunk := response.read1(_CHUNK):
        body.extend(chunk)
        if len(body) > policy.max_bytes:
            raise LimitExceeded(
                f"the audio URL serves more than the limit of {policy.max_bytes} bytes",
                reason="PAYLOAD_TOO_LARGE",
            )
        if time.monotonic() - started > policy.total_timeout_s:
            raise InvalidRequest(_too_slow(policy), reason="URL_FETCH_FAILED")
    return bytes(body)


def _too_slow(policy: FetchPolicy) -> str:
    return f"fetching the audio URL took longer than {policy.total_timeout_s:.0f} s"
