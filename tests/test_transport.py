"""crawler.transport against the real local server: httpx in and out, aiohttp underneath."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest

from crawler.config import FetchSettings
from crawler.fetch import _FINISHED, Fetcher, classify_exception, make_client
from crawler.transport import AiohttpClient, AiohttpTransport, map_aiohttp_exception
from crawler.types import ErrorKind, FetchResult, Hop
from tests.server import LocalServer, _Handler

pytestmark = pytest.mark.anyio

TIMEOUT = httpx.Timeout(2.0)


class _Twice(_Handler):
    """The test server's routes, and /twice: a header repeated, two cookies set."""

    def _route(self, n: int) -> None:
        if self.path.startswith("/twice"):
            self._done()
            body = b"<html><head><title>twice</title></head></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("X-Twice", "one")
            self.send_header("X-Twice", "two")
            self.send_header("Set-Cookie", "a=1; Path=/")
            self.send_header("Set-Cookie", "b=2; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/many"):
            # every X-Many line as it arrived (seen_headers is a dict: it keeps only the last)
            self.server.many.append(self.headers.get_all("X-Many") or [])  # type: ignore[attr-defined]
            self._page()
        else:
            super()._route(n)


@pytest.fixture(scope="module")
def twice() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.RequestHandlerClass = _Twice
    srv.many = []  # type: ignore[attr-defined]
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(limits=httpx.Limits(max_connections=4))
    try:
        yield t
    finally:
        await t.aclose()


def request(url: str, method: str = "GET", timeout: httpx.Timeout = TIMEOUT, **kw: Any) -> Any:
    return httpx.Request(method, url, extensions={"timeout": timeout.as_dict()}, **kw)


async def send(t: AiohttpTransport, req: httpx.Request) -> tuple[httpx.Response, bytes]:
    response = await t.handle_async_request(req)
    try:
        return response, b"".join([c async for c in response.aiter_raw()])
    finally:
        await response.aclose()


async def test_status_reason_and_body(server: LocalServer, transport: AiohttpTransport) -> None:
    r, body = await send(transport, request(server.url("/status/404")))
    assert r.status_code == 404 and r.reason_phrase == "Not Found"
    assert r.http_version == "HTTP/1.1"
    assert b"<title>404</title>" in body
    r, body = await send(transport, request(server.url("/page/gbk")))
    assert r.status_code == 200 and "百度文库".encode("gbk") in body
    assert r.headers["content-length"] == str(len(body))


async def test_head_has_no_body(server: LocalServer, transport: AiohttpTransport) -> None:
    r, body = await send(transport, request(server.url("/status/200"), "HEAD"))
    assert r.status_code == 405 and body == b""  # the server allows GET only


async def test_a_request_with_a_body_takes_the_simple_path(
    server: LocalServer, transport: AiohttpTransport
) -> None:
    r, _ = await send(transport, request(server.url("/echo"), "POST", content=b"x=1"))
    assert r.status_code == 501  # the test server has no POST; the request went out all the same


async def test_repeated_headers_both_ways(twice: LocalServer, transport: AiohttpTransport) -> None:
    r, _ = await send(transport, request(twice.url("/twice")))
    assert r.headers.get_list("x-twice") == ["one", "two"]
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    sent = httpx.Headers([("X-Many", "1"), ("X-Many", "2"), ("User-Agent", "t/1")])
    twice.many.clear()  # type: ignore[attr-defined]
    await send(transport, request(twice.url("/many?n=1"), headers=sent))
    await send(transport, request(twice.url("/many?n=2"), headers=sent))  # from the cache
    assert twice.many == [["1", "2"], ["1", "2"]]  # type: ignore[attr-defined]


async def test_the_session_keeps_no_cookies(twice: LocalServer) -> None:
    """Cookies are httpx's business (client.cookies): the session itself sends none back."""
    t = AiohttpTransport()
    try:
        await send(t, request(twice.url("/twice")))
        await send(t, request(twice.url("/echo?jar=transport")))
    finally:
        await t.aclose()
    async with AiohttpClient(timeout=TIMEOUT) as client:
        await client.get(twice.url("/twice"))
        await client.get(twice.url("/echo?jar=client"))
    seen = {path: h for _, path, h in twice.seen_headers}
    assert "cookie" not in seen["/echo?jar=transport"]
    assert seen["/echo?jar=client"]["cookie"] == "a=1; b=2"


async def test_the_body_streams_and_a_capped_read_stops(
    server: LocalServer, transport: AiohttpTransport
) -> None:
    r = await transport.handle_async_request(request(server.url("/big?kb=2048")))
    got = 0
    chunks = 0
    try:
        async for chunk in r.aiter_raw():
            got += len(chunk)
            chunks += 1
            if got >= 100_000:
                break
    finally:
        await r.aclose()
    assert 100_000 <= got < 2048 * 1024 and chunks >= 1
    # the unfinished connection was closed, not pooled: the next request gets a fresh one
    r, body = await send(transport, request(server.url("/status/200")))
    assert r.status_code == 200 and b"200" in body


async def test_the_fetcher_caps_an_endless_body(server: LocalServer) -> None:
    s = FetchSettings(timeout=2.0, retries=0, host_interval=0.0, max_body=50_000)
    async with Fetcher(s) as f:
        r = await f.fetch(server.url("/endless"))
    assert r.status == 200 and r.truncated and r.body is not None and len(r.body) == 50_000


async def test_gzip_is_left_encoded(server: LocalServer, transport: AiohttpTransport) -> None:
    r = await transport.handle_async_request(request(server.url("/bomb/gzip?mb=1")))
    try:
        first = b""
        async for chunk in r.aiter_raw():
            first = chunk
            break
    finally:
        await r.aclose()
    assert r.headers["content-encoding"] == "gzip" and first[:2] == b"\x1f\x8b"
    # httpx's client decodes it, as it does over its own transport
    async with AiohttpClient(timeout=TIMEOUT) as client:
        got = await client.get(server.url("/bomb/gzip?mb=1"))
    assert got.content.startswith(b"<html>") and len(got.content) >= 1 << 20


async def test_the_url_goes_out_as_httpx_wrote_it(
    server: LocalServer, transport: AiohttpTransport
) -> None:
    """No second quoting by yarl: the request target is httpx's, as on httpx's own transport."""
    url = httpx.URL(server.url("/echo/a[1]%41b?x=[y]%41&z=%7e&q=a b"))
    await send(transport, request(str(url)))
    assert server.hits[url.raw_path.decode()] == 1
    assert url.raw_path == b"/echo/a[1]%41b?x=[y]%41&z=%7e&q=a%20b"


async def test_redirects_are_not_followed(server: LocalServer, transport: AiohttpTransport) -> None:
    r, _ = await send(transport, request(server.url("/redirect/302?to=/page/plain")))
    assert r.status_code == 302 and r.headers["location"] == "/page/plain"
    assert server.hits["/page/plain"] == 0


async def test_read_timeout_is_mapped(server: LocalServer, transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.ReadTimeout) as info:
        await send(transport, request(server.url("/silent?s=3"), timeout=httpx.Timeout(0.3)))
    assert isinstance(info.value.__cause__, aiohttp.SocketTimeoutError)
    assert classify_exception(info.value)[0] is ErrorKind.TIMEOUT


async def test_a_body_that_stalls_times_out(
    server: LocalServer, transport: AiohttpTransport
) -> None:
    r = await transport.handle_async_request(
        request(server.url("/drip?s=3"), timeout=httpx.Timeout(2.0, read=0.1))
    )
    try:
        with pytest.raises(httpx.ReadTimeout):
            async for _ in r.aiter_raw():
                pass
    finally:
        await r.aclose()


async def test_pool_timeout_is_a_connect_timeout(server: LocalServer) -> None:
    t = AiohttpTransport(limits=httpx.Limits(max_connections=1))
    try:
        held = asyncio.ensure_future(send(t, request(server.url("/held?s=1"))))
        await asyncio.sleep(0.2)
        with pytest.raises(httpx.ConnectTimeout) as info:
            await send(t, request(server.url("/status/200"), timeout=httpx.Timeout(2, pool=0.2)))
        assert classify_exception(info.value)[0] is ErrorKind.TIMEOUT
        r, _ = await held
        assert r.status_code == 200
    finally:
        await t.aclose()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_refused_connection_is_mapped(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.TransportError) as info:
        await send(transport, request(f"http://127.0.0.1:{_free_port()}/"))
    # httpx-aiohttp's table makes every ClientConnectionError a ConnectTimeout; the cause says
    # what it was
    assert type(info.value) is httpx.ConnectTimeout
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert classify_exception(info.value)[0] is ErrorKind.CONNECT


async def test_dns_failure_is_mapped(
    transport: AiohttpTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_such_name(*a: Any, **kw: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
    with pytest.raises(httpx.TransportError) as info:
        await send(transport, request("http://nowhere.example/"))
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorDNSError)
    assert classify_exception(info.value)[0] is ErrorKind.DNS


async def test_a_reset_mid_body_is_a_protocol_error(
    server: LocalServer, transport: AiohttpTransport
) -> None:
    with pytest.raises(httpx.TransportError) as info:
        await send(transport, request(server.url("/reset?after=500")))
    assert classify_exception(info.value)[0] is ErrorKind.PROTOCOL


async def test_a_dropped_connection_is_a_protocol_error(
    server: LocalServer, transport: AiohttpTransport
) -> None:
    with pytest.raises(httpx.TransportError) as info:
        await send(transport, request(server.url("/drop")))
    assert classify_exception(info.value)[0] is ErrorKind.PROTOCOL


async def test_other_exceptions_pass_through(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await send(transport, request("ftp://127.0.0.1/x"))
    assert map_aiohttp_exception(ValueError("x")) is None


def test_the_table_is_httpx_aiohttps() -> None:
    """Each aiohttp exception becomes the httpx class httpx-aiohttp chose for it."""
    theirs = pytest.importorskip("httpx_aiohttp.transport")
    key = aiohttp.client_reqrep.ConnectionKey("h", 80, False, True, None, None, None, None)
    os_error = OSError(111, "refused")
    samples: list[BaseException] = [
        aiohttp.ServerTimeoutError("t"),
        aiohttp.SocketTimeoutError("t"),
        aiohttp.ConnectionTimeoutError("t"),
        aiohttp.ClientConnectionError("c"),
        aiohttp.ClientOSError(104, "reset"),
        aiohttp.ClientConnectionResetError("reset"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectorError(key, os_error),
        aiohttp.ClientConnectorDNSError(key, os_error),
        aiohttp.ClientProxyConnectionError(key, os_error),
        aiohttp.ClientPayloadError("p"),
        aiohttp.NonHttpUrlClientError("ftp://x"),
        aiohttp.InvalidUrlClientError("http://"),
        aiohttp.ClientResponseError(None, (), status=400),  # type: ignore[arg-type]
        ValueError("not aiohttp's"),
    ]
    for exc in samples:
        mine = map_aiohttp_exception(exc)
        try:
            with theirs.map_aiohttp_exceptions():
                raise exc
        except Exception as raised:  # noqa: BLE001 - whatever it became
            expected = type(raised) if raised is not exc else None
        assert (type(mine) if mine is not None else None) is expected, exc
        if mine is not None:
            assert str(mine) == str(exc)


async def test_proxy_credentials_reach_the_proxy(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local server answers absolute-form requests too, so it can stand in for a proxy.
    monkeypatch.setenv("HTTP_PROXY", server.url("").replace("://", "://user:pw@"))
    url = server.url("/echo?proxied=1", host="localhost")
    async with make_client(FetchSettings(timeout=2.0, transport="aiohttp")) as client:
        r = await client.get(url)
    assert r.status_code == 200 and server.hits[url] == 1
    (headers,) = [h for _, path, h in server.seen_headers if "proxied" in path]
    assert headers["proxy-authorization"] == "Basic dXNlcjpwdw=="  # user:pw


async def test_make_client_is_on_the_lean_transport(server: LocalServer) -> None:
    for no_private in (False, True):
        settings = FetchSettings(timeout=2.0, transport="aiohttp", no_private=no_private)
        async with make_client(settings) as client:
            assert isinstance(client, AiohttpClient)
            t = client._transport_for_url(httpx.URL(server.url("/")))  # noqa: SLF001
            assert isinstance(t, AiohttpTransport)
        async with Fetcher(settings) as f:
            r = await f.fetch(server.url("/status/200"))
        if no_private:
            assert r.error is ErrorKind.PRIVATE_ADDRESS
        else:
            assert r.status == 200


async def test_the_fetchers_request_is_httpxs(server: LocalServer) -> None:
    """The request built from headers prepared per origin is the one httpx.Request builds."""
    async with Fetcher(FetchSettings(timeout=2.0, retries=0, host_interval=0.0)) as f:
        client = f._client  # noqa: SLF001
        assert client is not None
        for text in (server.url("/echo?prepared=1"), "http://[::1]:8080/x", "https://a.example/"):
            url = httpx.URL(text)
            built = httpx.Request("GET", url, headers=client.headers)
            prepared = f._prepared_headers(client.headers, url.netloc)  # noqa: SLF001
            assert prepared.raw == built.headers.raw
        client.headers["X-Later"] = "1"  # a change to the client's headers is seen
        url = httpx.URL(server.url("/echo?prepared=2"))
        assert f._prepared_headers(client.headers, url.netloc).get("x-later") == "1"  # noqa: SLF001
        r = await f.fetch(str(url))
    assert r.status == 200
    (host, _, headers) = server.seen_headers[-1]
    assert host == url.netloc.decode() and headers["x-later"] == "1"
    assert headers["accept-encoding"] == "gzip, deflate"


def test_finished_is_replace_for_every_field() -> None:
    """_FINISHED rebuilds the FetchResult field by field: none may be left out."""
    r = FetchResult(
        url="u",
        final_url="f",
        status=201,
        hops=(Hop(301, "h"),),
        headers={"server": "s"},
        body=b"b",
        elapsed_ms=5,
        attempts=2,
        error=ErrorKind.PROTOCOL,
        error_detail="d",
        fetched_at=datetime(2020, 1, 1, tzinfo=UTC),
        truncated=True,
        retry_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    defaults = FetchResult(url="", final_url="", status=None)
    for f in dataclasses.fields(FetchResult):
        assert getattr(r, f.name) != getattr(defaults, f.name), f"set {f.name} in this test"
    at = datetime(2021, 2, 3, tzinfo=UTC)
    assert _FINISHED.replace(r, 7, 99, at) == dataclasses.replace(
        r, attempts=7, elapsed_ms=99, fetched_at=at
    )
