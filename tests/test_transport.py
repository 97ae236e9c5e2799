"""The fetcher's client (crawler.fetch.make_client) against the real local server: httpx's API,
aiohttp underneath through the public httpx-aiohttp transport, set up for the fetcher."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from crawler.config import FetchSettings, HostRule
from crawler.fetch import Fetcher, make_client
from crawler.fetch.client import Sender, environment_proxies
from crawler.types import ErrorKind
from tests.server import LocalServer, _Handler

pytestmark = pytest.mark.anyio

AIOHTTP = FetchSettings(timeout=2.0, transport="aiohttp")


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


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_status_reason_and_body(server: LocalServer) -> None:
    async with make_client(AIOHTTP) as client:
        r = await client.get(server.url("/status/404"))
        assert r.status_code == 404 and r.reason_phrase == "Not Found"
        assert r.http_version == "HTTP/1.1" and b"<title>404</title>" in r.content
        r = await client.get(server.url("/page/gbk"))
    assert r.status_code == 200 and "百度文库".encode("gbk") in r.content


async def test_it_is_aiohttp_underneath() -> None:
    """What the client raises is httpx's, caused by aiohttp's."""
    async with make_client(AIOHTTP) as client:
        with pytest.raises(httpx.TransportError) as info:
            await client.get(f"http://127.0.0.1:{_free_port()}/")
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)


async def test_repeated_headers_both_ways(twice: LocalServer) -> None:
    sent = httpx.Headers([("X-Many", "1"), ("X-Many", "2"), ("User-Agent", "t/1")])
    twice.many.clear()  # type: ignore[attr-defined]
    async with make_client(AIOHTTP) as client:
        r = await client.get(twice.url("/twice"))
        await client.get(twice.url("/many?n=1"), headers=sent)
    assert r.headers.get_list("x-twice") == ["one", "two"]
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    # httpx-aiohttp hands httpx's headers to aiohttp as a mapping: a repeated request header
    # goes out joined, which RFC 9110 §5.3 makes the same field (the fetcher repeats none).
    assert [", ".join(v) for v in twice.many] == ["1, 2"]  # type: ignore[attr-defined]


async def test_cookies_are_httpxs_alone(twice: LocalServer) -> None:
    """The aiohttp session keeps no jar of its own: the cookies go back once, from httpx's."""
    async with make_client(AIOHTTP) as client:
        await client.get(twice.url("/twice"))
        await client.get(twice.url("/echo?jar=client"))
        client.cookies.clear()
        await client.get(twice.url("/echo?jar=cleared"))
    seen = {path: h for _, path, h in twice.seen_headers}
    assert seen["/echo?jar=client"]["cookie"] == "a=1; b=2"
    assert "cookie" not in seen["/echo?jar=cleared"]


async def test_a_capped_read_stops_and_the_next_request_goes_on(server: LocalServer) -> None:
    s = FetchSettings(timeout=2.0, retries=0, host_interval=0.0, max_body=100_000)
    async with Fetcher(s) as f:
        r = await f.fetch(server.url("/big?kb=2048"))
        assert r.truncated and r.body is not None and len(r.body) == 100_000
        # the unfinished connection was closed, not pooled: the next request gets a fresh one
        r = await f.fetch(server.url("/status/200"))
    assert r.status == 200


async def test_the_fetcher_caps_an_endless_body(server: LocalServer) -> None:
    s = FetchSettings(timeout=2.0, retries=0, host_interval=0.0, max_body=50_000)
    async with Fetcher(s) as f:
        r = await f.fetch(server.url("/endless"))
    assert r.status == 200 and r.truncated and r.body is not None and len(r.body) == 50_000


async def test_gzip_arrives_encoded(server: LocalServer) -> None:
    """aiohttp leaves the body as sent (the fetcher inflates it with a cap); httpx's own
    reading of the response still decodes it."""
    async with make_client(AIOHTTP) as client:
        async with client.stream("GET", server.url("/bomb/gzip?mb=1")) as r:
            first = b""
            async for chunk in r.aiter_raw():
                first = chunk
                break
        assert r.headers["content-encoding"] == "gzip" and first[:2] == b"\x1f\x8b"
        got = await client.get(server.url("/bomb/gzip?mb=1"))
    assert got.content.startswith(b"<html>") and len(got.content) >= 1 << 20


async def test_redirects_are_not_followed(server: LocalServer) -> None:
    async with make_client(AIOHTTP) as client:
        r = await client.get(server.url("/redirect/302?to=/page/plain"))
    assert r.status_code == 302 and r.headers["location"] == "/page/plain"
    assert server.hits["/page/plain"] == 0


async def test_proxy_credentials_reach_the_proxy(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local server answers absolute-form requests too, so it can stand in for a proxy.
    monkeypatch.setenv("HTTP_PROXY", server.url("").replace("://", "://user:pw@"))
    url = server.url("/echo?proxied=1", host="localhost")
    async with make_client(AIOHTTP) as client:
        r = await client.get(url)
    assert r.status_code == 200 and server.hits[url] == 1
    (headers,) = [h for _, path, h in server.seen_headers if "proxied" in path]
    assert headers["proxy-authorization"] == "Basic dXNlcjpwdw=="  # user:pw


@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [("", True), ("localhost", False), ("*", False), (".localhost", True), ("127.0.0.1", True)],
)
async def test_no_proxy_is_read_as_httpx_reads_it(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, no_proxy: str, proxied: bool
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    url = server.url(f"/status/200?no_proxy={no_proxy}", host="localhost")
    async with make_client(AIOHTTP) as client:
        assert (await client.get(url)).status_code == 200
    assert server.hits[url] == (1 if proxied else 0)  # a proxy sees the absolute URL


async def test_the_fetchers_request_headers(server: LocalServer) -> None:
    s = FetchSettings(timeout=2.0, retries=0, host_interval=0.0, headers={"X-Every": "1"})
    async with Fetcher(s) as f:
        r = await f.fetch(server.url("/echo?headers=1"))
    assert r.status == 200
    (host, _, headers) = server.seen_headers[-1]
    assert host == f"127.0.0.1:{server.port}" and headers["x-every"] == "1"
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["user-agent"] == s.user_agent


async def test_no_private_refuses_at_connect_time_too(server: LocalServer) -> None:
    async with Fetcher(FetchSettings(timeout=2.0, no_private=True)) as f:
        r = await f.fetch(server.url("/status/200"))
    assert r.error is ErrorKind.PRIVATE_ADDRESS
    assert server.hits["/status/200"] == 0


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_the_url_goes_out_as_written(server: LocalServer, transport: str) -> None:
    """A URL's percent-escapes reach the server as written, on either transport: a signed URL
    (S3's, a CDN's) is signed over those bytes. yarl's requoting (httpx-aiohttp hands aiohttp a
    string) sent `%7E` as `~`, `%2E` as `.`, `%27` as `'`, `%2f` as `%2F` and a query's `%2F`
    as `/`. What httpx itself escapes (a space) goes out escaped."""
    path = "/echo/%7Euser/a%2Fb/p%2fq/foo%2Etxt?sig=ab%2Bc%3D%2F&k=%27v%27&z=%7e&q=a b"
    async with Fetcher(FetchSettings(timeout=2.0, retries=0, transport=transport)) as f:
        r = await f.fetch(server.url(path))
    assert r.status == 200
    wire = path.replace(" ", "%20")
    assert server.hits[wire] == 1, server.hits


async def test_the_fetchers_direct_sends_go_out_as_its_clients_do(
    twice: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetcher's bulk path (client.Sender, straight through the aiohttp session) sends what
    the httpx client sends: default headers, --header, a host's own headers, user agent and
    cookies, the cookie jar's and those an answer set. A --header replaces the built-in header
    of its name, however it is spelled (httpx kept both: `zh-CN,…, fr`)."""
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tjarcookie\tfromjar\n",
        encoding="utf-8",
    )
    rule = HostRule(headers={"Authorization": "Bearer t0ken"}, cookies={"own": "yes"})
    s = dataclasses.replace(
        AIOHTTP,
        retries=0,
        host_interval=0.0,
        headers={"X-Everyone": "1", "accept-language": "fr"},
        cookie_jar=str(jar),
        hosts={"127.0.0.1": dataclasses.replace(rule, user_agent="special-agent")},
    )
    direct = 0
    get = Sender.get

    async def counted(self: Sender, *a: Any, **kw: Any) -> Any:
        nonlocal direct
        direct += 1
        return await get(self, *a, **kw)

    monkeypatch.setattr(Sender, "get", counted)
    seen: dict[str, dict[str, str]] = {}
    for way in ("client", "direct"):
        async with contextlib.AsyncExitStack() as stack:
            # a client given to the fetcher is what it sends with; its own: the Sender
            given = await stack.enter_async_context(make_client(s)) if way == "client" else None
            f = await stack.enter_async_context(Fetcher(s, client=given))
            assert (await f.fetch(twice.url(f"/twice?{way}"))).status == 200
            assert (await f.fetch(twice.url(f"/echo?{way}"))).status == 200
        (seen[way],) = [h for _, path, h in twice.seen_headers if path == f"/echo?{way}"]
        assert direct == (2 if way == "direct" else 0)
    assert seen["direct"] == seen["client"]
    sent = seen["direct"]
    assert sent["cookie"] == "jarcookie=fromjar; a=1; b=2; own=yes"
    assert sent["authorization"] == "Bearer t0ken" and sent["user-agent"] == "special-agent"
    assert sent["x-everyone"] == "1" and sent["accept-language"] == "fr"


@pytest.mark.parametrize(
    ("no_proxy", "pattern"),
    [("[::1]", "all://[::1]"), ("[::1]:8080", "all://[::1]:8080"), ("::1", "all://[::1]")],
)
def test_an_ipv6_address_in_no_proxy_may_be_written_in_brackets(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, pattern: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert environment_proxies()[pattern] is None


def test_a_no_proxy_entry_the_client_cannot_read_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    post = tmp_path / "post.md"
    post.write_text("# t\n\nhttp://127.0.0.1:9/x\n\nTitle\n", encoding="utf-8")
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "host,foo:bar:baz"}
    got = subprocess.run(
        [sys.executable, "-m", "crawler", "check", str(post), "--report-dir", str(tmp_path / "r")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert got.returncode == 1, got.stderr
    assert got.stderr.strip().splitlines() == [
        "Error: NO_PROXY: cannot read 'foo:bar:baz': Invalid port: 'bar:baz'"
    ]
    assert not (tmp_path / "r").exists()
