"""The fetcher's two send paths give one result. Its bulk path (client.Sender: a GET straight
through the client's aiohttp session, what a fetcher with a client of its own sends with) and
its httpx client (what a client given to the fetcher or a retry on httpx's own stack sends
with) fetch the same URL from real local servers, directly and through a local proxy; the
results (status, final URL, hops, kept headers, body, truncation, error kind and detail, and so
the title and verdict) and the requests the servers and the proxy saw (path as written, every
header) must be the same."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from crawler.classify import classify
from crawler.config import FetchSettings, HostRule
from crawler.engine import read_page
from crawler.fetch import Fetcher, make_client
from crawler.fetch.client import Sender
from crawler.fetch.guard import IPAddress
from crawler.types import ErrorKind, FetchResult, Hop, PageKind, PageMeta, Verdict
from tests.proxy import LocalProxy
from tests.server import LocalServer, _Handler, client_gone

pytestmark = pytest.mark.anyio

PATHS = ("sender", "client")

#: Every request a parity server read: (X-Path, path as written, its headers, names lower-cased).
WIRE: list[tuple[str, str, list[tuple[str, str]]]] = []
_WIRE_LOCK = threading.Lock()

_PAGE = b"<html><head><title>parity page</title></head><body><p>the body</p></body></html>"


def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return z.compress(data) + z.flush()


def _deflate(data: bytes, raw: bool = False) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def _answer(head: bytes, body: bytes = b"", length: bool = True) -> bytes:
    """A whole answer as raw bytes: the status line and headers in `head` (CRLF-separated)."""
    extra = b"\r\nContent-Length: %d" % len(body) if length else b""
    return head + extra + b"\r\nConnection: close\r\n\r\n" + body


HTML = b"Content-Type: text/html; charset=utf-8"

#: /p/raw/{name}: answers written as bytes on the wire, then the connection closes.
RAW: dict[str, bytes] = {
    "continue": b"HTTP/1.1 100 Continue\r\n\r\n" + _answer(b"HTTP/1.1 200 OK\r\n" + HTML, _PAGE),
    "early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    + _answer(b"HTTP/1.1 200 OK\r\n" + HTML, _PAGE),
    "204": _answer(b"HTTP/1.1 204 No Content\r\nServer: parity", length=False),
    "304": _answer(b"HTTP/1.1 304 Not Modified\r\nServer: parity", length=False),
    "205": _answer(b"HTTP/1.1 205 Reset Content\r\n" + HTML),
    "no-reason": _answer(b"HTTP/1.1 200\r\n" + HTML, _PAGE),
    "odd-status": _answer(b"HTTP/1.1 299 Odd\r\n" + HTML, _PAGE),
    "599": _answer(b"HTTP/1.1 599 Network Read Timeout\r\n" + HTML, _PAGE),
    "429": _answer(b"HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\n" + HTML, _PAGE),
    "503-pause": _answer(b"HTTP/1.1 503 Busy\r\nRetry-After: 86400\r\n" + HTML, _PAGE),
    "dup-headers": _answer(
        b"HTTP/1.1 200 OK\r\nServer: one\r\nServer: two\r\nContent-Type: text/html\r\n"
        b"Content-Type: charset=utf-8\r\nRetry-After: 5\r\nRetry-After: 6\r\nX-Other: a",
        _PAGE,
    ),
    "nonascii-headers": _answer(
        b"HTTP/1.1 200 OK\r\nServer: caf\xc3\xa9\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"X-Latin: caf\xe9",
        _PAGE,
    ),
    "latin1-server": _answer(b"HTTP/1.1 200 OK\r\nServer: caf\xe9\r\n" + HTML, _PAGE),
    "no-ctype": _answer(b"HTTP/1.1 200 OK\r\nServer: parity", _PAGE),
    "pdf": _answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf", b"%PDF-1.4 " * 100),
    "json": _answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json", b'{"a": 1}'),
    "xhtml": _answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/xhtml+xml", _PAGE),
    "redirect-no-location": _answer(b"HTTP/1.1 302 Found\r\n" + HTML, _PAGE),
    "redirect-with-body": _answer(
        b"HTTP/1.1 301 Moved\r\nLocation: /p/echo/after-body\r\n" + HTML, _PAGE * 100
    ),
    "location-latin1": _answer(b"HTTP/1.1 302 Found\r\nLocation: /p/echo/caf\xe9"),
    "location-utf8": _answer(b"HTTP/1.1 302 Found\r\nLocation: /p/echo/caf\xc3\xa9?q=\xc3\xbc"),
    "location-spaces": _answer(b"HTTP/1.1 302 Found\r\nLocation:   /p/echo/a b?q=c d  "),
    "location-tab": _answer(b"HTTP/1.1 302 Found\r\nLocation: /p/echo/\ttab"),
    "two-locations": _answer(
        b"HTTP/1.1 302 Found\r\nLocation: /p/echo/first\r\nLocation: /p/echo/second"
    ),
    "cookie-utf8": _answer(
        b"HTTP/1.1 302 Found\r\nSet-Cookie: u=caf\xc3\xa9; Path=/\r\nLocation: /p/echo/cookie-utf8"
    ),
    "cookie-latin1": _answer(
        b"HTTP/1.1 302 Found\r\nSet-Cookie: l=caf\xe9; Path=/\r\nLocation: /p/echo/cookie-latin1"
    ),
    "cookie-order": _answer(
        b"HTTP/1.1 302 Found\r\nSet-Cookie: z=1; Path=/\r\nSet-Cookie: a=2; Path=/\r\n"
        b"Location: /p/echo/cookie-order"
    ),
    "cookie-paths": _answer(
        b"HTTP/1.1 302 Found\r\nSet-Cookie: short=1; Path=/\r\n"
        b"Set-Cookie: long=2; Path=/p/echo\r\nSet-Cookie: other=3; Path=/elsewhere\r\n"
        b"Location: /p/echo/cookie-paths"
    ),
    "cookie-attrs": _answer(
        b"HTTP/1.1 302 Found\r\nSet-Cookie: s=1; Secure; Path=/\r\n"
        b"Set-Cookie: h=2; HttpOnly; Max-Age=3600; Path=/\r\n"
        b"Set-Cookie: gone=3; Max-Age=0; Path=/\r\n"
        b"Set-Cookie: d=4; Domain=127.0.0.1; Path=/\r\n"
        b'Set-Cookie: q="quoted value"; Path=/\r\nLocation: /p/echo/cookie-attrs'
    ),
    "cookie-on-200": _answer(b"HTTP/1.1 200 OK\r\nSet-Cookie: page=1; Path=/\r\n" + HTML, _PAGE),
    "cookie-mixed": _answer(
        b"HTTP/1.1 302 Found\r\nSet-Cookie: u=caf\xc3\xa9; Path=/\r\nSet-Cookie: ok=1; Path=/\r\n"
        b"Set-Cookie: l=caf\xe9; Path=/\r\nSet-Cookie: caf\xc3\xa9=name; Path=/\r\n"
        b"Location: /p/echo/cookie-mixed"
    ),
    # the body cut short: a Content-Length the connection closes before; a chunked body that
    # stops mid-chunk; a chunk size that is not hex
    "short-body": _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n" + HTML, _PAGE, False),
    "short-chunked": _answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + HTML, b"400\r\n" + _PAGE, False
    ),
    "bad-chunk": _answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + HTML, b"zz\r\nxx\r\n0\r\n\r\n", False
    ),
    "read-to-close": _answer(b"HTTP/1.1 200 OK\r\n" + HTML, _PAGE, False),
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "empty": b"",
    "bad-header": b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
    "switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n",
}

#: /p/enc/{name}: the page with that Content-Encoding (bytes as the label says, or not).
ENCODED: dict[str, tuple[str, bytes]] = {
    "gzip": ("gzip", _gzip(_PAGE)),
    "x-gzip": ("x-gzip", _gzip(_PAGE)),
    "GZIP": ("GZIP", _gzip(_PAGE)),
    "deflate": ("deflate", _deflate(_PAGE)),
    "raw-deflate": ("deflate", _deflate(_PAGE, raw=True)),
    "br": ("br", b"\x1b\x4f\x00\xf8not really brotli"),
    "gzip-twice": ("gzip, gzip", _gzip(_gzip(_PAGE))),
    "identity": ("identity", _PAGE),
    "bad-gzip": ("gzip", b"this is not gzip at all, whatever the header says"),
    "gzip-then-junk": ("gzip", _gzip(_PAGE) + b"trailing junk"),
    "big-gzip": ("gzip", _gzip(b"<html><head><title>big</title></head><body>" + b"x" * 500_000)),
}


class _Parity(_Handler):
    """The test server's routes, every request noted in WIRE, and the /p/ routes:
    /p/echo/...         a page titled by its path
    /p/raw/{name}       RAW[name], bytes as they are
    /p/enc/{name}       the page with the Content-Encoding of ENCODED[name]
    /p/go?code=C&to=L[&cookie=K=V]  a C redirect to L (its UTF-8 bytes), setting that cookie
    /p/stall            headers and part of the body, then nothing until the client leaves
    """

    def _route(self, n: int) -> None:
        with _WIRE_LOCK:
            WIRE.append(
                (
                    self.headers.get("X-Path", ""),
                    self.path,
                    sorted((k.lower(), v) for k, v in self.headers.items()),
                )
            )
        parts = urlsplit(self.path)
        seg = parts.path.split("/")
        if not parts.path.startswith("/p/"):
            super()._route(n)
        elif seg[2] == "echo":
            title = quote(self.path, safe="/?=&")
            self._send(200, "text/html", f"<html><head><title>{title}</title></head>".encode())
        elif seg[2] == "raw":
            self._raw(RAW[seg[3]])
        elif seg[2] == "enc":
            coding, body = ENCODED[seg[3]]
            self._send(200, "text/html", body, {"Content-Encoding": coding})
        elif seg[2] == "go":
            q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            head = b"HTTP/1.1 %s Moved\r\nLocation: %s" % (q["code"].encode(), q["to"].encode())
            if "cookie" in q:
                head += b"\r\nSet-Cookie: " + q["cookie"].encode() + b"; Path=/"
            self._raw(_answer(head))
        elif seg[2] == "stall":
            self._done()
            self.close_connection = True
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\n\r\n"
                + _PAGE[:40]
            )
            self.wfile.flush()
            end = time.monotonic() + 120  # a bound for the server, never reached by a test
            while time.monotonic() < end and not client_gone(self.connection, 0.05):
                pass
        else:
            self._send(404, "text/html", b"<html><head><title>404</title></head></html>")


def _start(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> LocalServer:
    srv = LocalServer(host, tls=tls)
    srv.RequestHandlerClass = _Parity
    return srv.start()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The parity servers (IPv4, IPv6, HTTPS with a trusted and an untrusted certificate), a
    port nothing listens on and one whose backlog is full (a connect that never completes), and
    two proxies: plain http asking for credentials, and one speaking HTTPS."""
    trustme = pytest.importorskip("trustme")
    ca, stranger = trustme.CA(), trustme.CA()
    good, bad = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(good)
    stranger.issue_cert("127.0.0.1").configure_cert(bad)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    v4, v6, tls, untrusted = _start(), _start("::1"), _start(tls=good), _start(tls=bad)
    proxy, tls_proxy = LocalProxy(credentials="user:pw").start(), LocalProxy(tls=good).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    # A listener that never accepts, its backlog (0) filled by one connection: the next SYN
    # gets no answer, so a connect there waits until the client's connect timeout.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())
    try:
        yield {
            "v4": v4.url(""),
            "hp": f"127.0.0.1:{v4.port}",
            "port": v4.port,
            "v6": v6.url(""),
            "v6port": v6.port,
            "lh": v4.url("", host="localhost"),
            "tls": tls.url(""),
            "untrusted": untrusted.url(""),
            "refused": f"http://127.0.0.1:{refused}",
            "full": f"http://127.0.0.1:{full.getsockname()[1]}",
            "bundle": str(bundle),
            "proxies": {"proxy": proxy, "tls-proxy": tls_proxy},
        }
    finally:
        filler.close()
        full.close()
        proxy.stop()
        tls_proxy.stop()
        for srv in (v4, v6, tls, untrusted):
            srv.stop()


def _only_127_0_0_1(ip: IPAddress) -> str | None:
    """--no-private as the tests see it: 127.0.0.1 is public, every other address private."""
    return None if ip == ipaddress.ip_address("127.0.0.1") else "private here"


def _go(code: int, to: str, cookie: str | None = None) -> str:
    """The path of a /p/go redirect."""
    q = f"code={code}&to={quote(to, safe='{}')}"  # {v4} and the like: filled in later
    return f"/p/go?{q}&cookie={quote(cookie, safe='')}" if cookie else f"/p/go?{q}"


#: (id, URL with {v4}, {v6}, {lh}, {hp}, {port}… of `servers`, settings, whether the servers'
#: view is compared: not for a request the client may give up on before the server reads it)
CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    # redirects: every code, relative and absolute, to another host and scheme
    *[
        (f"redirect-{c}", f"{{v4}}/redirect/{c}?to=/p/echo/{c}", {}, True)
        for c in (301, 302, 303, 307, 308)
    ],
    ("relative", "{v4}" + _go(302, "echo/relative"), {}, True),
    ("dot-dot", "{v4}" + _go(302, "../p/echo/up"), {}, True),
    ("query-only", "{v4}" + _go(302, "?code=302&to=/p/echo/query-only"), {}, True),
    ("scheme-relative", "{v4}" + _go(301, "//{hp}/p/echo/scheme-relative"), {}, True),
    ("other-host", "{v4}" + _go(302, "{lh}/p/echo/other-host"), {}, True),
    ("to-ipv6", "{v4}" + _go(302, "{v6}/p/echo/v6"), {}, True),
    ("to-https", "{v4}" + _go(302, "{tls}/p/echo/tls"), {}, True),
    ("upper-scheme", "{v4}" + _go(302, "HTTP://{hp}/p/echo/upper"), {}, True),
    ("spaces", "{v4}" + _go(302, "/p/echo/a b?q=c d"), {}, True),
    ("non-ascii", "{v4}" + _go(302, "/p/echo/café/字?q=ü&r=%C3%BC"), {}, True),
    ("percent", "{v4}" + _go(302, "/p/echo/%7E/%2F/%2f?x=%2F&y=%7e&z=%zz&w=%"), {}, True),
    ("fragment", "{v4}" + _go(302, "/p/echo/frag#part"), {}, True),
    ("idn", "{v4}" + _go(302, "http://bücher.invalid:{port}/"), {}, True),
    ("to-ftp", "{v4}" + _go(302, "ftp://example.com/f"), {}, True),
    ("redirect-to-self", "{v4}" + _go(302, "/p/go?code=302&to=x"), {}, True),
    ("loop", "{v4}/loop", {}, True),
    ("chain-ok", "{v4}/chain/3", {"max_redirects": 3}, True),
    ("too-many", "{v4}/chain/4", {"max_redirects": 3}, True),
    ("too-many-default", "{v4}/chain/30", {}, True),
    *[
        (f"location-{k}", f"{{v4}}/location/{k}", {}, True)
        for k in (
            "bracket",
            "space-in-host",
            "ftp",
            "file",
            "javascript",
            "no-host",
            "bad-port",
            "empty",
            "bytes",
            "control",
            "huge",
        )
    ],  # fmt: skip
    *[
        (f"raw-{k}", f"{{v4}}/p/raw/{k}", {}, True)
        for k in (
            "redirect-no-location",
            "redirect-with-body",
            "location-latin1",
            "location-utf8",
            "location-spaces",
            "location-tab",
            "two-locations",
        )
    ],  # fmt: skip
    # cookies: set by a redirect and sent on the next hop, to the same host only
    *[
        (k, f"{{v4}}/p/raw/{k}", {}, True)
        for k in (
            "cookie-order",
            "cookie-paths",
            "cookie-attrs",
            "cookie-on-200",
            "cookie-utf8",
            "cookie-latin1",
            "cookie-mixed",
        )
    ],  # fmt: skip
    ("cookie-gate", "{v4}/cookie-gate/x", {}, True),
    ("cookie-other-host", "{v4}" + _go(302, "{lh}/p/echo/c", "sent=no"), {}, True),
    ("cookie-to-ipv6", "{v4}" + _go(302, "{v6}/p/echo/c", "sent=no"), {}, True),
    # statuses, 1xx, duplicate and odd headers
    *[(f"status-{c}", f"{{v4}}/status/{c}", {}, True) for c in (200, 403, 404, 410, 500, 503)],
    *[
        (f"raw-{k}", f"{{v4}}/p/raw/{k}", {}, True)
        for k in (
            "continue",
            "early-hints",
            "204",
            "304",
            "205",
            "no-reason",
            "odd-status",
            "599",
            "429",
            "503-pause",
            "dup-headers",
            "nonascii-headers",
            "latin1-server",
            "no-ctype",
            "pdf",
            "json",
            "xhtml",
            "switching",
            "not-http",
            "empty",
            "bad-header",
        )
    ],  # fmt: skip
    ("binary", "{v4}/binary", {}, True),
    ("gbk", "{v4}/page/gbk", {}, True),
    ("article", "{v4}/page/article", {}, True),
    # bodies: codings, the cap, bodies cut short
    *[(f"enc-{k}", f"{{v4}}/p/enc/{k}", {}, True) for k in ENCODED],
    ("enc-big-gzip-capped", "{v4}/p/enc/big-gzip", {"max_body": 100_000}, True),
    ("cap", "{v4}/big?kb=300", {"max_body": 100_000}, True),
    ("cap-exact", "{v4}/big?kb=1", {"max_body": 1024 + 44}, True),
    ("gzip-bomb", "{v4}/bomb/gzip?mb=5", {"max_body": 100_000}, True),
    ("deflate-bomb", "{v4}/bomb/deflate?mb=5", {"max_body": 100_000}, True),
    ("short-body", "{v4}/p/raw/short-body", {}, True),
    ("short-chunked", "{v4}/p/raw/short-chunked", {}, True),
    ("bad-chunk", "{v4}/p/raw/bad-chunk", {}, True),
    ("read-to-close", "{v4}/p/raw/read-to-close", {}, True),
    ("http10", "{v4}/http10", {}, True),
    ("reset", "{v4}/reset?after=500", {}, True),
    ("lying-length", "{v4}/lying-length?claim=10000&real=100", {}, True),
    ("drop", "{v4}/drop", {}, True),
    # timeouts and connections
    ("slow-headers", "{v4}/silent?s=120", {"timeout": 0.5}, False),
    ("slow-body", "{v4}/p/stall", {"timeout": 0.5}, True),
    ("drip-past-deadline", "{v4}/drip?s=60", {"deadline": 1.0}, False),
    ("connect-timeout", "{full}/", {"timeout": 0.5}, False),
    ("refused", "{refused}/", {}, True),
    ("redirect-to-refused", "{v4}" + _go(302, "{refused}/x"), {}, True),
    # TLS
    ("https", "{tls}/p/echo/tls", {}, True),
    ("untrusted", "{untrusted}/p/echo/tls", {}, False),
    # the URL itself: fragments, queries, paths, user info, hosts
    ("fragment-url", "{v4}/p/echo/x#frag", {}, True),
    ("empty-fragment", "{v4}/p/echo/x#", {}, True),
    ("query-repeats", "{v4}/p/echo/q?a=1&a=2&&b=&c", {}, True),
    ("query-space", "{v4}/p/echo/q?q=a b", {}, True),
    ("query-non-ascii", "{v4}/p/echo/q?q=ü&r=%C3%BC&s=字", {}, True),
    ("query-plus", "{v4}/p/echo/q?a=b+c&d=e%2Bf", {}, True),
    ("query-percent", "{v4}/p/echo/q?%&%zz=%2F&x=%7e", {}, True),
    ("query-odd", "{v4}/p/echo/q?q=<>\"'{}|\\^`[]", {}, True),
    ("query-empty", "{v4}/p/echo/q?", {}, True),
    ("query-questions", "{v4}/p/echo/q??a=?", {}, True),
    ("path-percent", "{v4}/p/echo/%7E/%2F/%2f/%41", {}, True),
    ("path-space", "{v4}/p/echo/a b", {}, True),
    ("path-non-ascii", "{v4}/p/echo/ü/字", {}, True),
    ("path-dots", "{v4}/p/echo/./a/../b", {}, True),
    ("path-encoded-dots", "{v4}/p/echo/%2e%2e/b", {}, True),
    ("path-params", "{v4}/p/echo/x;p=1", {}, True),
    ("path-double-slash", "{v4}/p/echo//x//y", {}, True),
    ("path-backslash", "{v4}/p/echo/a\\b", {}, True),
    ("upper-scheme-url", "HTTP://{hp}/p/echo/upper", {}, True),
    ("ipv6", "{v6}/p/echo/v6", {}, True),
    ("ipv6-upper", "http://[0:0:0:0:0:0:0:0001]:{v6port}/p/echo/x", {}, True),
    ("ipv6-long", "http://[0:0:0:0:0:0:0:1]:{v6port}/p/echo/%7E", {}, True),
    ("userinfo", "http://user:pass@{hp}/p/echo/auth", {}, True),
    ("userinfo-percent", "http://us%40er:p%3Ass@{hp}/p/echo/auth", {}, True),
    ("userinfo-latin1", "http://üser:päss@{hp}/p/echo/auth", {}, True),
    ("userinfo-cjk", "http://用户:密码@{hp}/p/echo/auth", {}, True),
    ("userinfo-no-password", "http://user@{hp}/p/echo/auth", {}, True),
    ("userinfo-redirect", "http://user:pass@{hp}" + _go(302, "/p/echo/relative"), {}, True),
    ("userinfo-redirect-host", "http://user:pass@{hp}" + _go(302, "{v4}/p/echo/named"), {}, True),
    ("localhost", "{lh}/p/echo/localhost", {}, True),
    ("upper-host", "http://LOCALHOST:{port}/p/echo/x", {}, True),
    ("idn", "http://bücher.invalid:{port}/", {}, True),
    ("punycode", "http://xn--bcher-kva.invalid:{port}/", {}, True),
    ("default-port", "http://{hp}/p/echo/x".replace("{hp}", "127.0.0.1:80"), {}, True),
    # --no-private: a name resolving to loopback, an address, a redirect to a private one
    ("no-private-name", "{lh}/p/echo/x", {"no_private": True}, True),
    ("no-private-address", "{v4}/p/echo/x", {"no_private": True}, True),
    (
        "no-private-redirect",
        "{v4}" + _go(302, "http://127.0.0.2:{port}/p/echo/x"),
        {"no_private": True, "forbidden": _only_127_0_0_1},
        True,
    ),
    (
        "no-private-public",
        "{v4}/p/echo/x",
        {"no_private": True, "forbidden": _only_127_0_0_1},
        True,
    ),
]

#: The settings a case runs with: as they come; with a cookie jar, headers for every host and
#: a host's own rule; with --header giving the Cookie, Host and Accept-Encoding too; as they
#: come behind a proxy with credentials (localhost not proxied).
VARIANTS = ("plain", "configured", "header-overrides", "proxy")

#: The environment of each variant behind a proxy ({proxy}: the proxy's address).
PROXY_ENV: dict[str, dict[str, str]] = {
    "proxy": {
        "HTTP_PROXY": "http://user:pw@{proxy}",
        "HTTPS_PROXY": "http://user:pw@{proxy}",
        "NO_PROXY": "localhost",
    },
    "tls-proxy": {"ALL_PROXY": "https://{proxy}", "NO_PROXY": "::1"},  # its own test
}


def _behind(variant: str, servers: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of a variant: its proxy, if it has one."""
    if variant in PROXY_ENV:
        where = servers["proxies"][variant].url.split("://")[1]
        for name, value in PROXY_ENV[variant].items():
            monkeypatch.setenv(name, value.replace("{proxy}", where))


def _settings(variant: str, tmp_path: Path, kw: dict[str, Any]) -> FetchSettings:
    s = FetchSettings(
        timeout=kw.get("timeout", 10.0),
        retries=0,
        host_interval=0.0,
        transport="aiohttp",
        max_redirects=kw.get("max_redirects", 10),
        max_body=kw.get("max_body", 2 * 1024 * 1024),
        no_private=kw.get("no_private", False),
        deadline=kw.get("deadline"),
    )
    if variant not in ("plain", "proxy"):
        jar = tmp_path / "cookies.txt"
        jar.write_text(
            "# Netscape HTTP Cookie File\n"
            "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tjarcookie\tfromjar\n"
            "localhost.local\tFALSE\t/p\tFALSE\t4102444800\tlocal\tyes\n",
            encoding="utf-8",
        )
        s = dataclasses.replace(
            s,
            headers={"X-Everyone": "1", "Accept-Language": "fr"},
            cookie_jar=str(jar),
            hosts={
                "127.0.0.1": HostRule(
                    headers={"Authorization": "Bearer t0ken", "X-Own": "secret"},
                    cookies={"own": "yes", "other": "1"},
                    user_agent="special-agent",
                ),
                "localhost": HostRule(headers={"X-Local": "1"}),
            },
        )
    if variant == "header-overrides":
        s = dataclasses.replace(
            s,
            headers={
                "Cookie": "given=1",
                "Host": "example.test",
                "Accept-Encoding": "identity",
                "accept-language": "x",
            },
        )
    return s


@contextlib.asynccontextmanager
async def _fetcher(s: FetchSettings, path: str, forbidden: Any) -> AsyncIterator[Fetcher]:
    """A fetcher on one send path: its own client (the Sender), or a client given to it."""
    s = dataclasses.replace(s, headers={**s.headers, "X-Path": path})
    async with contextlib.AsyncExitStack() as stack:
        given = None
        if path == "client":
            given = await stack.enter_async_context(make_client(s, forbidden=forbidden))
        yield await stack.enter_async_context(Fetcher(s, client=given, forbidden=forbidden))


_THEN = datetime(2000, 1, 1, tzinfo=UTC)


def _seen(r: FetchResult) -> dict[str, Any]:
    """What the rest of the crawler sees of a result: all of it but the times, its title and
    its verdict."""
    meta = read_page(r, with_hash=False)
    verdict = classify(r, meta, None)
    judged = verdict.detail
    if r.retry_at is not None:  # a pause the host asked for: its end is the wall clock's
        assert r.error_detail is not None
        detail = _then(r.error_detail)
        r = dataclasses.replace(r, retry_at=_THEN, error_detail=detail)
        judged = _then(judged) if judged is not None else None
    return {
        "result": dataclasses.replace(r, elapsed_ms=0, fetched_at=None),
        "title": meta.title if meta is not None else None,
        "verdict": (verdict.verdict, verdict.reason, judged),
    }


def _then(detail: str) -> str:
    """A detail with the end of a host's pause left out: the two paths read the clock a
    second apart when a run straddles one."""
    return re.sub(r"come back after .* UTC", "come back after (then)", detail)


async def both(
    settings: FetchSettings,
    url: str,
    forbidden: Any,
    wire: bool,
    monkeypatch: pytest.MonkeyPatch,
    proxies: Iterable[LocalProxy] = (),
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """The same URL through both paths: what each gave (and what the servers and `proxies`
    read of its requests), and how many GETs each sent through the Sender."""
    got: dict[str, dict[str, Any]] = {}
    direct = dict.fromkeys(PATHS, 0)
    now = [""]
    get = Sender.get

    async def counted(self: Sender, *a: Any, **kw: Any) -> Any:
        direct[now[0]] += 1
        return await get(self, *a, **kw)

    monkeypatch.setattr(Sender, "get", counted)
    for path in PATHS:
        now[0] = path
        before = [len(p.seen) for p in proxies]
        try:
            async with _fetcher(settings, path, forbidden) as f:
                r = await f.fetch(url)
        except Exception as exc:  # a bug on one path: the tool fails (it says what was raised)
            got[path] = {"raised": f"{type(exc).__name__}: {exc}"}
        else:
            got[path] = _seen(r)
        if wire:
            with _WIRE_LOCK:
                got[path]["wire"] = [
                    (p, [h for h in headers if h[0] != "x-path"])
                    for tag, p, headers in WIRE
                    if tag == path
                ]
            got[path]["proxied"] = [p.seen[n:] for p, n in zip(proxies, before, strict=True)]
    return got, direct


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("url", "kw", "wire"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_both_send_paths_give_one_result(
    servers: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
    url: str,
    kw: dict[str, Any],
    wire: bool,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", servers["bundle"])
    _behind(variant, servers, monkeypatch)
    with _WIRE_LOCK:
        WIRE.clear()
    for name, value in servers.items():
        url = url.replace(f"{{{name}}}", str(value))
    s = _settings(variant, tmp_path, kw)
    proxies = servers["proxies"].values()
    got, direct = await both(s, url, kw.get("forbidden"), wire, monkeypatch, proxies)
    assert got["sender"] == got["client"]
    # each path is the one it says: only the fetcher with a client of its own uses the Sender
    r = got["client"].get("result")
    refused_before = r is not None and r.error is ErrorKind.PRIVATE_ADDRESS and not r.hops
    assert direct["client"] == 0
    assert (direct["sender"] > 0) is not refused_before, direct


def _wire(got: dict[str, Any], path: str) -> dict[str, str]:
    """The headers the server read with the request for `path` (the only one)."""
    (headers,) = [dict(h) for p, h in got["wire"] if p == path]
    return headers


async def test_a_cookie_that_is_not_ascii_is_not_kept_on_either_path(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Set-Cookie with a UTF-8 or latin-1 name or value is dropped and the answer's ASCII
    cookies kept. httpx's path failed the run (UnicodeEncodeError), the Sender sent back
    mojibake (c3 a9 read as latin-1, sent as UTF-8)."""
    with _WIRE_LOCK:
        WIRE.clear()
    url = f"{servers['v4']}/p/raw/cookie-mixed"
    got, _ = await both(_settings("plain", tmp_path, {}), url, None, True, monkeypatch)
    for path in PATHS:
        assert got[path]["result"].status == 200, got[path]
        assert _wire(got[path], "/p/echo/cookie-mixed")["cookie"] == "ok=1"


@pytest.mark.parametrize(
    ("userinfo", "credentials"),
    [
        ("user:pass", "user:pass"),
        ("us%40er:p%3Ass", "us@er:p:ss"),
        ("üser:päss", "üser:päss"),
        ("用户:密码", "用户:密码"),
        ("user", "user:"),
    ],
)
async def test_credentials_in_a_url_go_as_basic_auth_in_utf_8_on_either_path(
    servers: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    userinfo: str,
    credentials: str,
) -> None:
    """user:pass@ in a URL is sent as Basic auth, UTF-8 (as httpx writes it), never in the
    request line; a host's own Authorization gives way to it. httpx's path failed the run
    (aiohttp refused its header next to the URL's credentials); the Sender sent latin-1 and
    failed the run on CJK."""
    with _WIRE_LOCK:
        WIRE.clear()
    url = f"http://{userinfo}@{servers['hp']}/p/echo/auth"
    got, _ = await both(_settings("configured", tmp_path, {}), url, None, True, monkeypatch)
    token = base64.b64encode(credentials.encode()).decode()
    for path in PATHS:
        assert got[path]["result"].status == 200, got[path]
        assert _wire(got[path], "/p/echo/auth")["authorization"] == f"Basic {token}"


async def test_a_long_written_ipv6_address_leaves_the_path_as_written_on_either_path(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http://[0:0:0:0:0:0:0:1]/…/%7E: httpx's path sent `~` (yarl shortens the address only
    when it quotes, so the written URL's origin looked like another one)."""
    with _WIRE_LOCK:
        WIRE.clear()
    url = f"http://[0:0:0:0:0:0:0:1]:{servers['v6port']}/p/echo/%7E"
    got, _ = await both(_settings("plain", tmp_path, {}), url, None, True, monkeypatch)
    for path in PATHS:
        assert [p for p, _ in got[path]["wire"]] == ["/p/echo/%7E"], got[path]


async def test_url_credentials_follow_a_relative_redirect_and_not_one_naming_a_host(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative Location is joined to the URL, credentials and all; a Location naming the
    host (the same one here) has none of its own."""
    token = "Basic " + base64.b64encode(b"user:pass").decode()
    for to, sent in (("/p/echo/relative", True), (f"{servers['v4']}/p/echo/named", False)):
        with _WIRE_LOCK:
            WIRE.clear()
        url = f"http://user:pass@{servers['hp']}" + _go(302, to)
        got, _ = await both(_settings("plain", tmp_path, {}), url, None, True, monkeypatch)
        for path in PATHS:
            assert got[path]["result"].status == 200, got[path]
            first, then = [dict(h) for _, h in got[path]["wire"]]
            assert first["authorization"] == token
            assert then.get("authorization") == (token if sent else None)


@pytest.mark.parametrize(
    "to",
    [
        "https://mp.weixin.qq.com/mp/wappoc_appmsgcaptcha?poc_token=x&target_url=https%3A%2F%2Fa",
        "https://www.zhihu.com/account/unhuman?type=unhuman&need_login=false",
    ],
    ids=["wechat", "zhihu"],
)
async def test_a_redirect_to_the_sites_verification_page_is_blocked_without_asking_it(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, to: str
) -> None:
    """A Location on one of its site's verification paths (sites.py: anti_robot_paths) is
    that page: the link is blocked as if it had been shown it, and the Location is not asked
    for (it was: one request more each time, 732 on the whole blog's WeChat URLs)."""
    with _WIRE_LOCK:
        WIRE.clear()
    url = f"{servers['v4']}" + _go(302, to)
    got, _ = await both(_settings("plain", tmp_path, {}), url, None, True, monkeypatch)
    assert got["sender"] == got["client"]
    for path in PATHS:
        r = got[path]["result"]
        assert (r.status, r.final_url, r.hops, r.error, r.body) == (
            302,
            to,
            (Hop(302, url),),
            None,
            None,
        )
        assert got[path]["verdict"] == (Verdict.BLOCKED, "anti-robot", "anti-robot page (HTTP 302)")
        assert read_page(r) == PageMeta(kind=PageKind.ANTI_ROBOT)
        assert [p for p, _ in got[path]["wire"]] == [url.removeprefix(servers["v4"])]


def _proxied(got: dict[str, Any], variant: str) -> list[tuple[str, str, str | None]]:
    """What the proxy of `variant` read of a path's requests (method, target, credentials)."""
    proxied: list[list[tuple[str, str, str | None]]] = got["proxied"]
    return proxied[list(PROXY_ENV).index(variant)]


async def test_proxy_credentials_go_with_each_http_request_and_with_the_connect(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy with user:pw@, both paths send Proxy-Authorization with each plain-http
    request and with the CONNECT of an https URL, never to the server; the old Sender was not
    used behind a proxy at all."""
    monkeypatch.setenv("SSL_CERT_FILE", servers["bundle"])
    _behind("proxy", servers, monkeypatch)
    token = "Basic " + base64.b64encode(b"user:pw").decode()
    tls = servers["tls"].split("://")[1]
    url = f"{servers['v4']}" + _go(302, f"{servers['tls']}/p/echo/tls")
    with _WIRE_LOCK:
        WIRE.clear()
    got, direct = await both(
        _settings("proxy", tmp_path, {}),
        url,
        None,
        True,
        monkeypatch,
        [*servers["proxies"].values()],
    )
    assert direct == {"sender": 2, "client": 0}
    for path in PATHS:
        assert got[path]["result"].status == 200, got[path]
        assert _proxied(got[path], "proxy") == [
            ("GET", url, token),
            ("CONNECT", tls, token),
        ]
        assert all("proxy-authorization" not in dict(h) for _, h in got[path]["wire"])
        assert got[path]["wire"][0][0] == _go(302, f"{servers['tls']}/p/echo/tls")


@pytest.mark.parametrize(
    ("credentials", "where", "kind", "status"),
    [
        ("user:wrong@", "v4", None, 407),  # the proxy's answer to a plain-http request
        ("user:wrong@", "tls", ErrorKind.PROXY, None),  # its answer to the CONNECT
        ("", "v4", None, 407),
        ("", "tls", ErrorKind.PROXY, None),
    ],
)
async def test_a_proxy_that_refuses_the_credentials(
    servers: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    credentials: str,
    where: str,
    kind: ErrorKind | None,
    status: int | None,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", servers["bundle"])
    proxy = servers["proxies"]["proxy"].url.replace("://", f"://{credentials}")
    monkeypatch.setenv("ALL_PROXY", proxy)
    url = f"{servers[where]}/p/echo/refused"
    got, direct = await both(_settings("plain", tmp_path, {}), url, None, False, monkeypatch)
    assert got["sender"] == got["client"]
    assert direct == {"sender": 1, "client": 0}
    r = got["sender"]["result"]
    assert (r.error, r.status) == (kind, status), r


async def test_a_proxy_that_is_not_there(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    url = f"{servers['v4']}/p/echo/nowhere"
    got, direct = await both(_settings("plain", tmp_path, {}), url, None, False, monkeypatch)
    assert got["sender"] == got["client"]
    assert direct == {"sender": 1, "client": 0}
    assert got["sender"]["result"].error is ErrorKind.PROXY


@pytest.mark.parametrize(
    "no_proxy",
    [
        "",
        "localhost",
        "LOCALHOST",
        "*",
        ".localhost",
        "*.localhost",
        "127.0.0.1",
        "127.0.0.1/8",
        "::1",
        "0:0:0:0:0:0:0:1",
        "localhost:{port}",
        "127.0.0.1:{port}",
        "http://127.0.0.1:{port}",
        "https://127.0.0.1",
        "all://localhost",
        "host,  localhost ,",
        "calhost",
    ],
)
async def test_no_proxy_sends_a_url_the_same_way_on_either_path(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    """NO_PROXY as the code reads it (curl's rules, as httpx mounts): for each URL, the Sender
    goes through the proxy exactly when httpx's client does."""
    monkeypatch.setenv("SSL_CERT_FILE", servers["bundle"])
    proxy = servers["proxies"]["proxy"].url.replace("://", "://user:pw@")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", no_proxy.replace("{port}", str(servers["port"])))
    proxies = [*servers["proxies"].values()]
    for where in ("v4", "lh", "v6", "tls"):
        url = f"{servers[where]}/p/echo/{where}"
        with _WIRE_LOCK:
            WIRE.clear()
        got, direct = await both(
            _settings("plain", tmp_path, {}), url, None, True, monkeypatch, proxies
        )
        assert got["sender"] == got["client"], where
        assert got["sender"]["result"].status == 200, (where, got["sender"])
        assert direct == {"sender": 1, "client": 0}


async def test_a_proxy_that_speaks_https(
    servers: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALL_PROXY=https://…: the proxy's certificate is checked against SSL_CERT_FILE, an http
    URL goes to it in absolute form and an https URL through a CONNECT (TLS in TLS), on both
    paths; NO_PROXY=::1 goes direct."""
    monkeypatch.setenv("SSL_CERT_FILE", servers["bundle"])
    _behind("tls-proxy", servers, monkeypatch)
    proxies = [*servers["proxies"].values()]
    expected = {
        "v4": [("GET", f"{servers['v4']}/p/echo/v4", None)],
        "tls": [("CONNECT", servers["tls"].split("://")[1], None)],
        "v6": [],
    }
    for where, seen in expected.items():
        url = f"{servers[where]}/p/echo/{where}"
        with _WIRE_LOCK:
            WIRE.clear()
        got, direct = await both(
            _settings("configured", tmp_path, {}), url, None, True, monkeypatch, proxies
        )
        assert got["sender"] == got["client"], where
        assert direct == {"sender": 1, "client": 0}
        for path in PATHS:
            assert got[path]["result"].status == 200, (where, got[path])
            assert _proxied(got[path], "tls-proxy") == seen
