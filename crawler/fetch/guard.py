"""The --no-private guard: which addresses are off limits, and the checks that refuse them.

A URL naming such an address is excluded before the run (`private_url`); a host name is
resolved and judged before each request, every redirect hop included (`AddressGuard`), and again
by aiohttp's resolver at connect time (`guarded_resolver`: a name that resolves to a public
address first and to a private one a moment later, DNS rebinding, is refused all the same).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Forbidden = Callable[[IPAddress], str | None]

#: How long a host's resolved addresses stay judged, seconds.
ADDRESS_TTL = 30.0

#: Cloud metadata services: AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba; AWS ECS tasks.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def forbidden_address(ip: IPAddress) -> str | None:
    """What makes `ip` off limits under --no-private, or None for a public address.

    Loopback, private (RFC 1918, fc00::/7), shared (100.64/10), link-local (169.254/16,
    fe80::/10), cloud metadata, unspecified, multicast, reserved and documentation ranges: every
    address that is not globally routable unicast. An IPv4 address inside IPv6 (mapped,
    compatible, 6to4, Teredo, NAT64) is judged by the IPv4 address too.
    """
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        inner: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            inner.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            inner.append(ip.sixtofour)
        if ip.teredo is not None:
            inner.extend(ip.teredo)
        if any(ip in net for net in _NAT64) or 1 < int(ip) < 1 << 32:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for v4 in inner:
            why = forbidden_address(v4)
            if why is not None:
                return why
    for label, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
    ):
        if hit:
            return label
    if not ip.is_global:
        return "non-public"
    return None


_IPV4_LIKE = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?$")


def private_url(url: str) -> str | None:
    """Why --no-private excludes `url` by its own address, else None (no name is resolved).

    As lychee's --exclude-private: the URL's host is `localhost` (or a name under it, RFC 6761)
    or an IP address --no-private refuses, in any spelling a URL parser reads as one
    (`127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`). A name that resolves to such an
    address is refused when it is fetched instead (Fetcher, at every hop).
    """
    try:
        host = httpx.URL(url).host.lower().rstrip(".")
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a loopback name"
    ip: IPAddress
    if ":" in host:
        try:
            ip = ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return None
    elif _IPV4_LIKE.match(host):
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    else:
        return None
    label = forbidden_address(ip)
    if label is None:
        return None
    return f"{host} is {'an' if label[0] in 'aeiou' else 'a'} {label} address"


class ForbiddenAddress(Exception):
    """A host resolved to an address --no-private refuses."""


class AddressGuard:
    """Refuses a URL whose host resolves to an address `forbidden` names (judged per host and
    port, for ADDRESS_TTL seconds)."""

    def __init__(self, forbidden: Forbidden) -> None:
        self.forbidden = forbidden
        self._resolved: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def check(self, url: httpx.URL) -> None:
        """Raise ForbiddenAddress when url's host resolves to any address refused.

        A name that resolves to several addresses is refused when any of them is. A resolver
        failure raises as the transport's would (socket.gaierror: a DNS error).
        """
        host = url.raw_host.decode("ascii", "replace")
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (host.lower(), port)
        now = time.monotonic()
        hit = self._resolved.get(key)
        if hit is None or hit[0] < now:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            why: str | None = None
            for info in infos:
                addr = str(info[4][0]).split("%")[0]  # drop an IPv6 zone
                label = self.forbidden(ipaddress.ip_address(addr))
                if label is not None:
                    why = (
                        f"{addr} is a {label} address"
                        if host == addr
                        else f"{host} resolves to {addr}, a {label} address"
                    )
                    break
            hit = self._resolved[key] = (now + ADDRESS_TTL, why)
        if hit[1] is not None:
            raise ForbiddenAddress(hit[1])


def guarded_resolver(forbidden: Forbidden) -> Any:
    """An aiohttp resolver that refuses a host whose addresses `forbidden` names."""
    import aiohttp

    class GuardedResolver(aiohttp.ThreadedResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[aiohttp.abc.ResolveResult]:
            found = await super().resolve(host, port, family)
            for r in found:
                label = forbidden(ipaddress.ip_address(r["host"].split("%")[0]))
                if label is not None:
                    raise ForbiddenAddress(
                        f"{host} resolves to {r['host']}, a {label} address (at connect time)"
                    )
            return found

    return GuardedResolver()
