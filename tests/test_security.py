"""Security: --no-private, secrets bound to their host's origin, fetched text that never injects.

Only 127.0.0.1, 127.0.0.2 and ::1 are contacted; every other address in here is refused before
any connection (and the resolver is faked where a name is needed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner, Result

import crawler.fetch.guard
from crawler.cli import cli
from crawler.config import FetchSettings
from crawler.fetch import Fetcher, ForbiddenAddress, IPAddress, forbidden_address, private_url
from crawler.fetch.guard import AddressGuard
from crawler.pipeline import check_links
from crawler.store import Store
from crawler.types import ErrorKind, Link
from tests.factories import T0
from tests.server import HOSTILE_TITLE, LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]


async def _no_sleep(seconds: float) -> None:
    pass


def invoke(args: list[str], **kw: Any) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kw)


def write_post(tmp_path: Path, urls: list[str]) -> Path:
    post = tmp_path / "post.md"
    post.write_text("# s\n\n" + "".join(f"{u}\n\n" for u in urls), encoding="utf-8")
    return post


def report(tmp_path: Path) -> list[dict[str, Any]]:
    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    links: list[dict[str, Any]] = doc["links"]
    return links


# ---------------------------------------------------------------------------- the predicate


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.20", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("255.255.255.255", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("::7f00:1", "loopback"),  # IPv4-compatible
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8
    ],
)
def test_forbidden_addresses(address: str, label: str | None) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) == label


# ------------------------------------------------------------------------ refused, never touched

#: Hosts that reach (or would reach) this machine or its network, in the spellings that slip
#: past a check on the URL's text: decimal, hex and short IPv4, mapped IPv6, a name.
PRIVATE_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "0.0.0.0",
    "2130706433",  # 127.0.0.1 as one number
    "0x7f000001",
    "127.1",
    "[::ffff:127.0.0.1]",
]
NEVER_CONTACTED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.0.1/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
]


def test_no_private_excludes_every_local_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    """Issue 13 #3: excluded and counted as excluded (as lychee's --exclude-private), never
    `error`, never confirmed dead however many runs; a name that resolves to a private address
    is found out when fetched and is excluded too (skipped)."""
    monkeypatch.chdir(tmp_path)
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kw: Any) -> Any:
        # intranet.test stands for a name of the local network: it resolves to loopback
        return real_getaddrinfo("127.0.0.1" if host == "intranet.test" else host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    urls = [server.url(f"/echo?np={i}", host=h) for i, h in enumerate(PRIVATE_HOSTS)]
    named = server.url("/echo?np=named", host="intranet.test")
    post = write_post(tmp_path, [*urls, *NEVER_CONTACTED, named])
    args = ["check", str(post), "--format", "json", "--no-private", "--confirm-days", "0", *FAST]
    for _ in range(3):  # runs enough to confirm a death
        r = invoke(args)
        assert r.exit_code == 0, r.output  # nothing broken; not "network down"
        assert f"({len(urls) + len(NEVER_CONTACTED) + 1} excluded)" in r.output, r.output
        links = report(tmp_path)
        assert [(rec["url"], rec["verdict"], rec["reason"]) for rec in links] == [
            (named, "skipped", "private-address")
        ]
        assert "intranet.test resolves to 127.0.0.1, a loopback address" in links[0]["detail"]
    assert sum(server.hits.values()) == 0  # nothing reached the server
    r = invoke(["history", named, "--json"])
    assert '"dead"' not in r.output and '"error"' not in r.output, r.output


def test_private_url_reads_the_address_in_the_url_only() -> None:
    assert private_url("http://127.1/") == "127.1 is a loopback address"
    assert private_url("http://[fd00:ec2::254]/x") == "fd00:ec2::254 is a cloud metadata address"
    assert private_url("http://0.0.0.0:8080/") == "0.0.0.0 is an unspecified address"
    assert private_url("http://Docs.Localhost./") == "docs.localhost is a loopback name"
    for public in (
        "http://8.8.8.8/",
        "http://example.com/",
        "http://0xcafe.be/",
        "http://1.2.3.4.5/",
    ):
        assert private_url(public) is None, public


def test_the_same_spellings_do_reach_the_server_without_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    """The control: each spelling above is a real way to this machine (aiohttp's URL parser
    refuses the non-canonical IPv4 forms; httpx's transport hands them to the resolver)."""
    monkeypatch.chdir(tmp_path)
    hosts = ["2130706433", "0x7f000001", "127.1"]
    urls = [server.url(f"/echo?reach={i}", host=h) for i, h in enumerate(hosts)]
    post = write_post(tmp_path, urls)
    r = invoke(["check", str(post), "--format", "json", "--transport", "httpx", *FAST])
    assert r.exit_code == 0, r.output
    assert all(server.hits[f"/echo?reach={i}"] == 1 for i in range(len(hosts)))


@pytest.mark.parametrize("how", ["config", "env"])
def test_no_private_from_the_config_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer, how: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if how == "config":
        (tmp_path / "crawler.toml").write_text("no_private = true\n", encoding="utf-8")
    else:
        monkeypatch.setenv("CRAWLER_NO_PRIVATE", "1")
    post = write_post(tmp_path, [server.url(f"/echo?how={how}")])
    r = invoke(["check", str(post), "--format", "json", *FAST])
    # Every link excluded: nothing to check, which is not success (issue 13 #7).
    assert r.exit_code == 1, r.output
    assert "all 1 links of" in r.output and "are excluded" in r.output
    assert not (tmp_path / "reports").exists()
    assert server.hits[f"/echo?how={how}"] == 0
    r = invoke(["config"])
    assert re.search(r"no.private\W+(true|True|1)", r.output), r.output


# ---------------------------------------------------------------------- redirects, re-checked


@pytest.fixture(scope="module")
def second() -> Iterator[LocalServer]:
    """A server on 127.0.0.2: the 'private' end of a redirect from 127.0.0.1."""
    try:
        srv = LocalServer("127.0.0.2").start()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    try:
        yield srv
    finally:
        srv.stop()


def public_loopback(ip: IPAddress) -> str | None:
    """The real predicate, except that 127.0.0.1 stands for a public address."""
    return None if ip == ipaddress.ip_address("127.0.0.1") else forbidden_address(ip)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_redirect_to_a_private_address_is_refused_at_the_hop(
    server: LocalServer,
    second: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(crawler.fetch.guard, "forbidden_address", public_loopback)
    inner = second.url(f"/echo?hop={transport}")
    # public → public → private: the check runs again after every redirect
    middle = server.url(f"/redirect/302?to={quote(inner, safe='')}")
    url = server.url(f"/redirect/301?to={quote(middle, safe='')}")
    settings = FetchSettings(host_interval=0, retries=0, no_private=True, transport=transport)
    store = Store.open(tmp_path / "h.sqlite")
    for day in range(4):  # still refused, and never confirmed dead (issue 13 #3)
        clock = lambda day=day: T0 + timedelta(days=day)  # noqa: E731
        run = await check_links(
            [Link(url=url, line=1)], settings, sleep=_no_sleep, store=store, clock=clock
        )
        c = run.checks[0]
        assert (c.verdict.value, c.reason) == ("blocked", "private-address"), c.detail
        assert "127.0.0.2 is a loopback address" in c.detail
    assert store.states([url])[url].fail_runs == 0
    store.close()
    assert c.fetch is not None and [h.status for h in c.fetch.hops] == [301, 302]
    assert c.fetch.final_url == inner
    assert second.hits[f"/echo?hop={transport}"] == 0  # refused before connecting
    assert sum(n for p, n in server.hits.items() if p.startswith("/redirect/")) == 2 * 4
    # The control: without --no-private the redirect is followed.
    settings = FetchSettings(host_interval=0, retries=0, transport=transport)
    run = await check_links([Link(url=url, line=1)], settings, sleep=_no_sleep)
    assert run.checks[0].verdict.value == "redirected"
    assert second.hits[f"/echo?hop={transport}"] == 1


@pytest.mark.anyio
async def test_a_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to a public and a private address is refused (no connection)."""
    table = {
        "mixed.example": ["93.184.216.34", "10.0.0.7"],
        "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
    }

    async def fake_getaddrinfo(host: str, port: int, **kw: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    async with Fetcher(FetchSettings(retries=0, no_private=True)) as f:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
        r = await f.fetch("http://mixed.example/")
        assert r.error is ErrorKind.PRIVATE_ADDRESS and r.attempts == 1
        assert r.error_detail == "mixed.example resolves to 10.0.0.7, a private address"
        r = await f.fetch("http://nowhere.example/")
        assert r.error is ErrorKind.DNS, r.error_detail
    guard = AddressGuard(forbidden_address)
    await guard.check(httpx.URL("http://public.example/"))  # passes
    with pytest.raises(ForbiddenAddress):
        await guard.check(httpx.URL("https://mixed.example:8443/"))


@pytest.mark.anyio
async def test_dns_rebinding_is_refused_at_connect_time_on_aiohttp(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is public when the fetcher checks it and loopback when aiohttp connects."""
    answers = iter(["93.184.216.34"] + ["127.0.0.1"] * 10)
    asked: list[str] = []

    async def rebinding(host: str, port: int, **kw: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    url = f"http://rebind.example:{server.port}/echo?rebind=1"
    async with Fetcher(FetchSettings(retries=0, no_private=True, transport="aiohttp")) as f:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
        r = await f.fetch(url)
    assert asked == ["rebind.example", "rebind.example"]  # the check, then aiohttp's own lookup
    assert r.error is ErrorKind.PRIVATE_ADDRESS, r.error_detail
    assert r.error_detail is not None and "at connect time" in r.error_detail
    assert server.hits["/echo?rebind=1"] == 0


# ---------------------------------------------------------------- secrets stay with their origin


def _headers_of(srv: LocalServer, marker: str) -> dict[str, str]:
    found = [h for _, path, h in srv.seen_headers if marker in path]
    assert len(found) == 1, srv.seen_headers
    return found[0]


SECRETS = (
    "[hosts.'127.0.0.1']\n"
    "cookies = { session = 's3cret' }\n"
    "headers = { Authorization = 'Bearer t0ken' }\n"
)


def test_secrets_do_not_follow_a_redirect_to_another_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    other = LocalServer().start()  # 127.0.0.1 too, another port: another origin
    try:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "crawler.toml").write_text(SECRETS, encoding="utf-8")
        target = other.url("/echo?port-hop=1")
        urls = [
            server.url(f"/redirect/302?to={quote(target, safe='')}"),
            other.url("/echo?direct=1"),
        ]
        r = invoke(["check", str(write_post(tmp_path, urls)), "--format", "json", *FAST])
        assert r.exit_code == 0, r.output
        hopped = _headers_of(other, "port-hop")
        assert "cookie" not in hopped and "authorization" not in hopped
        direct = _headers_of(other, "direct=1")  # listed in the post: the user's own choice
        assert direct.get("cookie") == "session=s3cret"
        assert direct.get("authorization") == "Bearer t0ken"
    finally:
        other.stop()


def test_secrets_do_not_follow_a_downgrade_to_plain_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    secure = LocalServer(tls=ctx).start()
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        (tmp_path / "crawler.toml").write_text(SECRETS, encoding="utf-8")
        plain = server.url("/echo?downgraded=1")
        urls = [
            secure.url(f"/redirect/302?to={quote(plain, safe='')}"),
            secure.url("/echo?tls=1"),
        ]
        r = invoke(["check", str(write_post(tmp_path, urls)), "--format", "json", *FAST])
        assert r.exit_code == 0, r.output
        assert _headers_of(secure, "tls=1").get("cookie") == "session=s3cret"
        downgraded = _headers_of(server, "downgraded")
        assert "cookie" not in downgraded and "authorization" not in downgraded
    finally:
        secure.stop()


# ------------------------------------------------------------- fetched text that tries to inject

_UNSAFE_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_hostile_page_text_never_injects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    """A title full of ANSI/OSC escapes, HTML and Markdown, through every output."""
    monkeypatch.chdir(tmp_path)
    url = server.url("/page/hostile-text")
    post = tmp_path / "post.md"
    post.write_text(f"# s\n\n{url}\n\nOld title\n\n{url}?untitled=1\n", encoding="utf-8")
    r = invoke(["check", str(post), *FAST])
    assert r.exit_code == 0, r.output
    assert "changed" in r.output and "RED" in r.output  # the fetched title is shown ...
    assert not _UNSAFE_TERMINAL.search(r.output)  # ... without its escapes
    assert "evil.example\x07" not in r.output

    html = (tmp_path / "reports" / "report.html").read_text(encoding="utf-8")
    assert "RED" in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert not re.search(r"href=[\"']?javascript:", html, re.IGNORECASE)

    md = (tmp_path / "reports" / "report.md").read_text(encoding="utf-8")
    assert "RED" in md
    assert not re.search(r"(?<!\\)<(script|img)", md)  # only as escaped text
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # no live link
    assert not _UNSAFE_TERMINAL.search(md.replace("\n", ""))

    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    assert doc["links"][0]["title"] == HOSTILE_TITLE  # the data, kept as it came

    r = invoke(["enrich", str(post), "--dry-run"])
    assert r.exit_code == 0, r.output
    added = [
        line[1:] for line in r.output.splitlines() if line.startswith("+") and "+++" not in line
    ]
    assert added and any("RED" in line for line in added), r.output
    for line in added:
        assert not _UNSAFE_TERMINAL.search(line) and "\u202e" not in line
        assert not re.search(r"(?<!\\)<(script|img)", line)
        assert not re.search(r"(?<!\\)\]\(javascript:", line)
