"""The exception table (crawler/fetch/errors.py): each failure a real local server provokes
becomes its ErrorKind on both transports; an exception the table does not know is a bug, and
the tool fails with one line (exit 1), the traceback under -v."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import crawler.cli
import crawler.fetch.body
import crawler.fetch.client
from crawler.config import FetchSettings
from crawler.fetch import Fetcher, classify_exception, error_table
from crawler.types import ErrorKind, FetchResult
from tests.server import LocalServer, _Handler

pytestmark = pytest.mark.anyio

TRANSPORTS = ["aiohttp", "httpx"]


class _Broken(_Handler):
    """The test server's routes, and two answers no HTTP client can read:
    /bad-gzip  gzip-labelled bytes that are not gzip
    /not-http  a line of another protocol instead of a status line
    """

    def _route(self, n: int) -> None:
        if self.path.startswith("/bad-gzip"):
            self._done()
            body = b"this is not gzip at all, whatever the header says"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/not-http"):
            self._raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        else:
            super()._route(n)


@pytest.fixture(scope="module")
def broken() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.RequestHandlerClass = _Broken
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fetch(url: str, transport: str, **kw: Any) -> FetchResult:
    base: dict[str, Any] = {"timeout": 2.0, "retries": 0, "host_interval": 0.0}
    async with Fetcher(FetchSettings(transport=transport, **{**base, **kw})) as f:
        return await f.fetch(url)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("path", "kind", "kw"),
    [
        ("/reset?after=500", ErrorKind.PROTOCOL, {}),  # a TCP reset mid-body
        ("/drop", ErrorKind.PROTOCOL, {}),  # closed without an answer
        ("/lying-length?claim=5000&real=10", ErrorKind.PROTOCOL, {}),
        ("/bad-gzip", ErrorKind.PROTOCOL, {}),  # httpx.DecodingError from the body reader
        ("/not-http", ErrorKind.PROTOCOL, {}),
        ("/silent?s=5", ErrorKind.TIMEOUT, {"timeout": 0.3}),
        ("/chain/30", ErrorKind.TOO_MANY_REDIRECTS, {"max_redirects": 10}),
    ],
    ids=["reset", "dropped", "short-body", "bad-gzip", "not-http", "read-timeout", "redirects"],
)
async def test_a_failure_the_server_provokes_is_its_kind(
    broken: LocalServer, transport: str, path: str, kind: ErrorKind, kw: dict[str, Any]
) -> None:
    r = await fetch(broken.url(path), transport, **kw)
    assert (r.status if kind is not ErrorKind.TOO_MANY_REDIRECTS else None, r.error) == (
        None,
        kind,
    ), r.error_detail
    assert r.error_detail


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_connect(transport: str) -> None:
    r = await fetch(f"http://127.0.0.1:{free_port()}/", transport)
    assert r.error is ErrorKind.CONNECT, r.error_detail


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_untrusted_certificate_is_tls(tmp_path: Path, transport: str) -> None:
    trustme = pytest.importorskip("trustme")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(ctx)  # a CA nobody trusts
    secure = LocalServer(tls=ctx).start()
    try:
        r = await fetch(secure.url("/status/200"), transport)
    finally:
        secure.stop()
    assert r.error is ErrorKind.TLS, r.error_detail


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_name_that_does_not_resolve_is_dns(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_such_name(*a: Any, **kw: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # The resolver's answer, as the system gives it for a name that does not exist (both
    # stacks resolve through the running loop's getaddrinfo).
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
    r = await fetch("http://nowhere.example/", transport)
    assert r.error is ErrorKind.DNS, r.error_detail


@pytest.mark.parametrize(
    ("transport", "kind"),
    # httpx's own stack raises the ConnectError of any refused connection: it cannot tell
    [("aiohttp", ErrorKind.PROXY), ("httpx", ErrorKind.CONNECT)],
)
async def test_a_proxy_that_refuses(
    server: LocalServer, transport: str, kind: ErrorKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    r = await fetch(server.url("/status/200", host="localhost"), transport)
    assert r.error is kind, r.error_detail


def test_the_table_goes_from_the_most_specific_to_the_least() -> None:
    """No entry is shadowed by an earlier one it is a subclass of."""
    for i, (cls, _) in enumerate(error_table()):
        for earlier, _ in error_table()[:i]:
            assert not issubclass(cls, earlier), f"{cls.__name__} after {earlier.__name__}"


def test_the_cause_says_more_than_the_wrapper() -> None:
    import aiohttp

    # httpx-aiohttp makes a dropped connection a ConnectTimeout; aiohttp's own says what it was
    try:
        try:
            raise aiohttp.ServerDisconnectedError()
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.ConnectTimeout("Server disconnected") from exc
    except httpx.ConnectTimeout as wrapped:
        assert classify_exception(wrapped) == (
            ErrorKind.PROTOCOL,
            "ServerDisconnectedError: Server disconnected",
        )


def test_an_exception_the_table_does_not_know_is_none() -> None:
    assert classify_exception(ZeroDivisionError("x")) is None
    # merely raised while an httpx error was handled: not explained by it
    try:
        try:
            raise httpx.ReadError("r")
        except httpx.ReadError:
            raise KeyError("bug")  # noqa: B904 - the point: a bug in an except block
    except KeyError as bug:
        assert isinstance(bug.__context__, httpx.ReadError)
        assert classify_exception(bug) is None


class _Bug(Exception):
    """What a bug in the fetcher raises here."""


async def test_an_unknown_exception_propagates_from_the_fetcher(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*a: object) -> Any:
        raise _Bug("reading the headers went wrong")

    monkeypatch.setattr(crawler.fetch.fetcher, "read_headers", bug)
    monkeypatch.setattr(crawler.fetch.client, "read_headers", bug)  # the Sender's
    with pytest.raises(_Bug):
        await fetch(server.url("/page/plain"), "aiohttp")


@pytest.mark.parametrize("verbose", [False, True])
def test_an_unknown_exception_fails_the_tool_with_one_line(
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    verbose: bool,
) -> None:
    def bug(*a: object) -> Any:
        raise _Bug("reading the headers went wrong")

    monkeypatch.setattr(crawler.fetch.fetcher, "read_headers", bug)
    monkeypatch.setattr(crawler.fetch.client, "read_headers", bug)  # the Sender's
    monkeypatch.chdir(tmp_path)
    post = tmp_path / "post.md"
    post.write_text(f"# Links\n\n{server.url('/page/plain?bug=1')}\n", encoding="utf-8")
    args = ["crawler", *(["-v"] if verbose else []), "check", str(post), "--no-history"]
    monkeypatch.setattr(sys, "argv", [*args, "--report-dir", str(tmp_path / "r"), "-q"])
    with pytest.raises(SystemExit) as info:
        crawler.cli.main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines == ["error: a bug: _Bug: reading the headers went wrong (-v shows where)"], err
    assert ("Traceback (most recent call last)" in err) is verbose
    assert "could not connect" not in err and not (tmp_path / "r" / "report.json").exists()
