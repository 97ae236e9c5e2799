"""The HTTP stacks' exceptions → ErrorKind: one table, most specific first.

A failure of a link is a value (its ErrorKind and a one-line detail); an exception the table
does not know is a bug of ours or of a library, never "could not connect":
`classify_exception` returns None for it and the fetcher lets it propagate (the tool fails).
"""

from __future__ import annotations

import functools
import socket
import ssl

import httpx

from crawler.types import ErrorKind


@functools.cache
def error_table() -> tuple[tuple[type[BaseException], ErrorKind], ...]:
    """Exception class → ErrorKind. The first entry that the exception, or an exception that
    caused it, is an instance of wins; so the entries go from the most specific to the least.

    httpx-aiohttp raises httpx's classes from aiohttp's, and they say less (a dropped
    connection or a DNS failure is a ConnectTimeout there): aiohttp's own come first. Under
    httpx's own stack the socket's and the TLS layer's errors are the causes of httpx's
    ConnectError. (Built at the first failure: a process that fetches nothing, such as the
    parent of the worker processes, does not import aiohttp for it.)
    """
    import aiohttp

    return (
        # aiohttp (the default transport)
        (aiohttp.ClientConnectorDNSError, ErrorKind.DNS),
        (aiohttp.ClientSSLError, ErrorKind.TLS),  # certificate, handshake
        (aiohttp.ServerFingerprintMismatch, ErrorKind.TLS),
        (aiohttp.ClientProxyConnectionError, ErrorKind.PROXY),
        (aiohttp.ClientHttpProxyError, ErrorKind.PROXY),
        (aiohttp.ServerTimeoutError, ErrorKind.TIMEOUT),  # connect and read timeouts
        (aiohttp.ClientConnectorError, ErrorKind.CONNECT),  # refused, unreachable
        (aiohttp.ServerDisconnectedError, ErrorKind.PROTOCOL),  # closed without an answer
        (aiohttp.ClientConnectionResetError, ErrorKind.PROTOCOL),
        (aiohttp.ClientPayloadError, ErrorKind.PROTOCOL),  # a body cut short or malformed
        (aiohttp.ClientResponseError, ErrorKind.PROTOCOL),  # an answer that is not HTTP
        (aiohttp.InvalidURL, ErrorKind.INVALID_URL),  # yarl refuses what httpx took
        (aiohttp.NonHttpUrlClientError, ErrorKind.INVALID_URL),
        (aiohttp.ClientOSError, ErrorKind.PROTOCOL),  # after connecting: a reset
        # the resolver and the TLS layer (under httpx's own stack, the causes of its ConnectError)
        (socket.gaierror, ErrorKind.DNS),
        (ssl.SSLError, ErrorKind.TLS),  # ssl.CertificateError included
        # httpx: its own stack, and the fetcher's body reader (DecodingError)
        (httpx.TimeoutException, ErrorKind.TIMEOUT),
        (httpx.ProxyError, ErrorKind.PROXY),
        (httpx.ConnectError, ErrorKind.CONNECT),
        (httpx.ReadError, ErrorKind.PROTOCOL),
        (httpx.WriteError, ErrorKind.PROTOCOL),
        (httpx.RemoteProtocolError, ErrorKind.PROTOCOL),
        (httpx.LocalProtocolError, ErrorKind.PROTOCOL),
        (httpx.DecodingError, ErrorKind.PROTOCOL),
        (httpx.UnsupportedProtocol, ErrorKind.INVALID_URL),
        (httpx.InvalidURL, ErrorKind.INVALID_URL),
    )


def classify_exception(exc: BaseException) -> tuple[ErrorKind, str] | None:
    """(ErrorKind, one-line detail) for an exception of the HTTP stack; None for one the table
    does not know (a bug: let it propagate)."""
    chain = exception_chain(exc)
    for cls, kind in error_table():
        for e in chain:
            if isinstance(e, cls):
                detail = next((str(c) for c in chain if str(c)), "")
                return kind, f"{type(e).__name__}: {detail or type(e).__name__}"[:300]
    return None


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and those it translates, outermost first.

    `raise … from` links count, and for httpcore's exceptions the one being handled when it
    was raised (httpcore's pool re-raises its translation `from None`, which keeps the cause
    only as the context); any other exception merely raised while another was handled is not
    explained by it (a bug in an `except` block stays a bug).
    """
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 8:
        out.append(cur)
        nxt = cur.__cause__
        if nxt is None and type(cur).__module__.startswith(_TRANSLATES_WITHOUT_FROM):
            nxt = cur.__context__
        cur = nxt
    return out


_TRANSLATES_WITHOUT_FROM = ("httpcore",)
