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

from services.core.errors import InvalidRequest, LimitExceeded

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
        names, networks = _parse_allowed(self.allow)
        if host.lower() in names or any(address in network for network in networks):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_global and not address.is_multicast


def _resolve(host: str, port: int, policy: FetchPolicy) -> str:
    """The address to connect to; every address the name resolves to must be permitted."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidRequest(f"cannot resolve the audio URL's host {host!r}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    refused = [a for a in addresses if not policy.permits(host, a)]
    if refused or not addresses:
        raise InvalidRequest(
            f"the audio URL's host {host!r} resolves to a non-public address; "
            f"only public http(s) URLs are fetched (operators can allow hosts with {ALLOW_ENV})"
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
            raise InvalidRequest("the audio URL is not a valid URL") from None
        scheme = (parsed.scheme or "").lower()
        if scheme not in ("http", "https") or not parsed.host:
            raise InvalidRequest("the audio URL must start with http:// or https://")
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
                        raise InvalidRequest(f"fetching the audio URL failed: HTTP {response.status}")
                    return _read_capped(response, policy, started)
                finally:
                    response.release_conn()
        except HTTPError as error:
            if time.monotonic() - started >= policy.total_timeout_s:
                raise InvalidRequest(_too_slow(policy)) from None
            raise InvalidRequest(f"could not fetch the audio URL ({type(error).__name__})") from None
    raise InvalidRequest(f"the audio URL redirected more than {policy.max_redirects} times")


def _read_capped(response: urllib3.BaseHTTPResponse, policy: FetchPolicy, started: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise LimitExceeded(f"the audio URL serves {declared} bytes; the limit is {policy.max_bytes} bytes")
    body = bytearray()
    # read1 returns whatever one socket read brings, so a body that trickles a byte at a time
    # (never slow enough for the read timeout) still meets the budget check between reads.
    while chunk := response.read1(_CHUNK):
        body.extend(chunk)
        if len(body) > policy.max_bytes:
            raise LimitExceeded(f"the audio URL serves more than the limit of {policy.max_bytes} bytes")
        if time.monotonic() - started > policy.total_timeout_s:
            raise InvalidRequest(_too_slow(policy))
    return bytes(body)


def _too_slow(policy: FetchPolicy) -> str:
    return f"fetching the audio URL took longer than {policy.total_timeout_s:.0f} s"
