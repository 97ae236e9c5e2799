"""The httpx client the fetcher sends with: aiohttp underneath, through httpx-aiohttp.

`make_client` sets it up once per fetcher: the default headers, the cookie jar, timeouts, the
environment's proxies and CA bundle, and (with --no-private) a resolver that refuses private
addresses at connect time. `stop_at_redirects` makes a client hand a redirect back to the
fetcher, which follows redirects itself, hop by hop.
"""

from __future__ import annotations

import base64
import contextvars
import email.message
import functools
import http.cookiejar
import ipaddress
import re
import urllib.request
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx

from crawler.config import FetchSettings
from crawler.errors import ConfigError
from crawler.fetch.body import ACCEPT_ENCODING, is_text, read_body, read_headers
from crawler.fetch.guard import Forbidden, forbidden_address, guarded_resolver
from crawler.types import REDIRECT_STATUSES

if TYPE_CHECKING:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport


def make_client(settings: FetchSettings, forbidden: Forbidden | None = None) -> httpx.AsyncClient:
    """An AsyncClient on the chosen transport; proxies and CA bundle come from the environment
    (make_clients, without the direct sender)."""
    return make_clients(settings, forbidden)[0]


def make_clients(
    settings: FetchSettings, forbidden: Forbidden | None = None
) -> tuple[httpx.AsyncClient, Sender | None]:
    """An AsyncClient on the chosen transport, and on aiohttp a Sender over the same aiohttp
    sessions, headers, cookie jar, timeouts and proxies (the fetcher's bulk path).

    With --no-private, aiohttp's resolver refuses forbidden addresses too (`forbidden`, default
    `forbidden_address`): the address it connects to is the address checked, so a name that
    resolves to a public address for the fetcher's check and to a private one a moment later
    (DNS rebinding) is refused all the same.
    """
    timeout = httpx.Timeout(settings.timeout)
    limits = httpx.Limits(
        max_connections=max(settings.max_concurrency, 1),
        max_keepalive_connections=max(settings.max_concurrency, 1),
    )
    built_in = {
        "User-Agent": settings.user_agent,
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
        "Accept-Encoding": ACCEPT_ENCODING,
    }
    # --header: every host (a host's own [hosts] headers win). A name given replaces the
    # built-in header of that name however it is spelled: httpx would keep both spellings.
    given = {name.lower() for name in settings.headers}
    headers = {k: v for k, v in built_in.items() if k.lower() not in given}
    headers.update(settings.headers)
    cookies = AnswerJar(AsciiCookies())
    if settings.cookie_jar:
        for cookie in load_cookie_jar(settings.cookie_jar).jar:
            cookies.set_cookie(cookie)
    transport: httpx.AsyncBaseTransport | None = None
    mounts: dict[str, httpx.AsyncBaseTransport | None] | None = None
    session: _Session | None = None
    ways: dict[str, ProxyWay | None] = {}
    if settings.transport == "aiohttp":
        guard = (forbidden or forbidden_address) if settings.no_private else None
        session = _Session(limits, guard)
        transport = aiohttp_transport(limits, guard=guard, session=session)
        # httpx reads the environment's proxies only for a transport of its own making. Each
        # proxy has a session of its own (its transport's, the Sender's too); a None mount
        # goes to the client's own transport: no proxy.
        mounts = {}
        for pattern, proxy in environment_proxies().items():
            if proxy is None:
                mounts[pattern] = ways[pattern] = None
                continue
            way = ProxyWay(proxy, _Session(limits, None))
            mounts[pattern] = aiohttp_transport(limits, proxy=proxy, session=way.session)
            ways[pattern] = way
    # trust_env=True: HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE work as they do for curl.
    client = httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        headers=headers,
        cookies=cookies,  # a CookieJar: the client keeps this one (not a copy)
        trust_env=True,
        follow_redirects=False,
        transport=transport,
        mounts=mounts,
    )
    sender = None
    if session is not None:
        proxies = ProxyRoutes(ways) if ways else None
        sender = Sender(session, client.headers, cookies, timeout, proxies)
    return client, sender


class _Session:
    """Makes the aiohttp session on first use (it needs the running loop), once: the client's
    transport and the Sender share it, and with it the connections."""

    def __init__(self, limits: httpx.Limits, guard: Forbidden | None) -> None:
        # trust_env: SSL_CERT_FILE and SSL_CERT_DIR, as for httpx's own transport
        self.ssl_context = httpx.create_ssl_context(trust_env=True)
        self._limits = limits
        self._guard = guard
        self.made: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self.made is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                ssl=self.ssl_context,
                limit=self._limits.max_connections or 100,
                keepalive_timeout=self._limits.keepalive_expiry,
                resolver=None if self._guard is None else guarded_resolver(self._guard),
            )
            self.made = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                middlewares=(_send_as_written, _resend_counted),
            )
        return self.made


def aiohttp_transport(
    limits: httpx.Limits,
    *,
    guard: Forbidden | None = None,
    proxy: httpx.Proxy | None = None,
    session: _Session | None = None,
) -> httpx.AsyncBaseTransport:
    """httpx-aiohttp's transport over a session made for the fetcher (`session`, or one of its
    own).

    The session keeps no cookies (httpx's jar does: a host's own cookies are sent by the fetcher
    alone) and, with `guard`, resolves through a resolver that refuses forbidden addresses.
    (A proxy is the user's own: its address is not judged.) Bodies arrive as sent: the fetcher
    inflates them with a cap.
    """
    if session is None:
        session = _Session(limits, guard)
    ssl_context = session.ssl_context
    transport = _written_transport()
    if proxy is None or proxy.auth is None:
        # verify: the context made above (the transport would load the CA bundle again)
        return transport(client=session, proxy=proxy, limits=limits, verify=ssl_context)
    # Credentials go as a header of our own: httpx-aiohttp would hand them to aiohttp's
    # deprecated BasicAuth. aiohttp sends proxy headers with the CONNECT of an https URL; an http
    # URL carries them itself (_ProxyCredentials).
    bare = _bare(proxy)
    inner = transport(client=session, proxy=bare, limits=limits, verify=ssl_context)
    return _ProxyCredentials(inner, bare.headers["Proxy-Authorization"])


def _bare(proxy: httpx.Proxy) -> httpx.Proxy:
    """A proxy with credentials as the Proxy-Authorization header among its own headers."""
    if proxy.auth is None:
        return proxy
    token = base64.b64encode(f"{proxy.auth[0]}:{proxy.auth[1]}".encode()).decode("ascii")
    value = f"Basic {token}"
    return httpx.Proxy(proxy.url, headers={**proxy.headers, "Proxy-Authorization": value})


class ProxyWay:
    """One of the environment's proxies as aiohttp is asked to send through it, per request
    (`proxy=`, `proxy_headers=`: what httpx-aiohttp's transport passes), and the session its
    requests go through (the proxy's transport's: one pool of connections for both paths)."""

    __slots__ = ("credentials", "headers", "session", "url")

    def __init__(self, proxy: httpx.Proxy, session: _Session) -> None:
        import yarl

        bare = _bare(proxy)
        self.session = session
        self.url = yarl.URL(str(bare.url))
        self.headers = bare.headers  # the CONNECT's (with an https URL)
        # an http URL's request carries the credentials itself (_ProxyCredentials)
        self.credentials = bare.headers.get("Proxy-Authorization") if proxy.auth else None


class ProxyRoutes:
    """Which way a URL goes: a ProxyWay, or None (no proxy), chosen among the patterns of
    environment_proxies as httpx's client chooses among its mounts (httpx's URLPattern: a
    pattern with a port first, then the longer host, then the longer scheme; `all://` and a
    host `*` match any; `*name` a name and its subdomains, `*.name` its subdomains)."""

    def __init__(self, ways: dict[str, ProxyWay | None]) -> None:
        rules = []
        for pattern, way in ways.items():
            u = httpx.URL(pattern)
            scheme = "" if u.scheme == "all" else u.scheme
            host = "" if u.host == "*" else u.host
            regex: re.Pattern[str] | None = None
            if host.startswith("*."):
                regex = re.compile(f"^.+\\.{re.escape(host[2:])}$")
            elif host.startswith("*"):
                regex = re.compile(f"^(.+\\.)?{re.escape(host[1:])}$")
            elif host:
                regex = re.compile(f"^{re.escape(host)}$")
            priority = (0 if u.port is not None else 1, -len(host), -len(scheme))
            rules.append((priority, scheme, regex, u.port, way))
        rules.sort(key=lambda rule: rule[0])  # stable: equals in their order, as httpx's sort
        self._rules = [rule[1:] for rule in rules]

    def __call__(self, url: httpx.URL) -> ProxyWay | None:
        for scheme, regex, port, way in self._rules:
            if (
                (not scheme or scheme == url.scheme)
                and (regex is None or regex.match(url.host))
                and (port is None or port == url.port)
            ):
                return way
        return None


#: What Sender.get gives: status, kept headers, body (None: not read), truncated, Location of
#: a redirect (None: not one).
Answer = tuple[int, dict[str, str], bytes | None, bool, str | None]


class Sender:
    """GETs straight through the client's aiohttp session: the fetcher's bulk path.

    The same session (connections, TLS context, --no-private's resolver), default headers,
    cookie jar and timeouts as the client's, and the same exceptions (httpx-aiohttp's
    `map_aiohttp_exceptions`), without httpx's objects for each request and answer (Request,
    Response, URL, headers and cookie wrappers, event hooks): 15-20 % of a worker's CPU in
    py-spy. A URL goes out as httpx wrote it (yarl's `encoded=True`, as _send_as_written does);
    a redirect comes back as an answer with its Location, not followed. Behind a proxy a URL
    goes the way the client's mounts would send it (`proxies`), through that proxy's session.
    """

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        headers: httpx.Headers,
        jar: http.cookiejar.CookieJar,
        timeout: httpx.Timeout,
        proxies: Callable[[httpx.URL], ProxyWay | None] | None = None,
    ) -> None:
        import aiohttp
        from multidict import CIMultiDict

        self._session = session
        self._proxies = proxies
        self._ways: list[ProxyWay] = []  # the proxies' sessions used: closed with the Sender
        # as httpx-aiohttp handed them to aiohttp: lower-case names, a repeated one joined
        self._headers: CIMultiDict[str] = CIMultiDict(headers.items())
        self._jar = jar
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
        )

    async def get(
        self, url: httpx.URL, extra: dict[str, str] | None, own_cookies: str | None, cap: int
    ) -> Answer:
        """GET `url` with the host's `extra` headers and `own_cookies` (after the jar's)."""
        import yarl
        from httpx_aiohttp.transport import map_aiohttp_exceptions

        text = str(url)
        headers = self._headers
        cookies = any(True for _ in self._jar)
        target = yarl.URL(text, encoded=True).with_fragment(None)
        userinfo = "@" in text and bool(url.userinfo)  # "@" first: most URLs have none
        way = self._proxies(url) if self._proxies is not None else None
        credentials = way.credentials if way is not None and url.scheme == "http" else None
        if extra or own_cookies or cookies or userinfo or credentials:
            headers = headers.copy()
            for k, v in (extra or {}).items():
                headers[k] = v
            if userinfo:
                # as httpx does: Basic auth, the URL's credentials as UTF-8 (aiohttp's own
                # is latin-1, and fails on other characters), over a host rule's header
                headers["authorization"] = basic_auth(url.username, url.password)
                target = target.with_user(None)
            if cookies:
                asked = urllib.request.Request(text, headers=dict(headers), method="GET")
                self._jar.add_cookie_header(asked)
                jar = asked.get_header("Cookie")
                if jar and "cookie" not in headers:
                    headers["cookie"] = jar
            if own_cookies:
                jar = headers.get("cookie")
                headers["cookie"] = f"{jar}; {own_cookies}" if jar else own_cookies
            if credentials:
                headers["proxy-authorization"] = credentials
        if way is None:
            session = self._session()
            proxy = proxy_headers = None
        else:
            if way not in self._ways:
                self._ways.append(way)
            session = way.session()
            proxy, proxy_headers = way.url, way.headers
        with map_aiohttp_exceptions():
            async with session.get(
                target,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as response:
                raw = response.raw_headers
                if _SET_COOKIE in response.headers or _SET_COOKIE2 in response.headers:
                    self._jar.extract_cookies(
                        _Answered(raw),  # type: ignore[arg-type]
                        urllib.request.Request(text, headers=dict(headers), method="GET"),
                    )
                kept, coding = read_headers(raw)
                status = response.status
                if status in REDIRECT_STATUSES and "location" in kept:
                    return status, kept, None, False, kept["location"]
                if not is_text(kept.get("content-type", "")):
                    return status, kept, None, False, None
                body, truncated = await read_body(
                    response.content.iter_chunked(_CHUNK), coding, cap
                )
                return status, kept, body, truncated, None

    async def aclose(self) -> None:
        """Close the sessions, when they were made (the client's transports may have closed
        them)."""
        for maker in (self._session, *(way.session for way in self._ways)):
            made = getattr(maker, "made", None)
            if made is not None:
                await made.close()


#: Bytes a body is read in (httpx-aiohttp's size).
_CHUNK = 16 * 1024


class _Answered:
    """An answer's headers as http.cookiejar reads them (`info()`: an email Message)."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def info(self) -> email.message.Message:
        info = email.message.Message()
        for k, v in self._raw:
            info[k.decode("latin-1")] = v.decode("latin-1")  # [] = appends
        return info


#: The URL of the request the transport is sending, as httpx wrote it.
_WRITTEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("written", default=None)


@functools.cache
def _written_transport() -> type[AiohttpTransport]:
    """httpx-aiohttp's transport, saying which URL it sends (_send_as_written reads it)."""
    from httpx_aiohttp import AiohttpTransport

    class Written(AiohttpTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.userinfo:
                # httpx has made its Authorization header from them; aiohttp refuses both
                request.url = request.url.copy_with(username=None, password=None)
            token = _WRITTEN.set(str(request.url))
            try:
                response = await super().handle_async_request(request)
            finally:
                _WRITTEN.reset(token)
            _SETS_COOKIE.set(_SET_COOKIE in response.headers or _SET_COOKIE2 in response.headers)
            return response

    return Written


#: Whether the answer a transport of ours just gave sets a cookie (AnswerJar reads it).
_SETS_COOKIE: contextvars.ContextVar[bool] = contextvars.ContextVar("sets_cookie", default=True)
_SET_COOKIE, _SET_COOKIE2 = "set-cookie", "set-cookie2"


def basic_auth(username: str, password: str) -> str:
    """An Authorization header's value for credentials in a URL, as httpx writes it (UTF-8,
    RFC 7617's charset)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class AsciiCookies(http.cookiejar.DefaultCookiePolicy):
    """The jar's policy: a cookie whose name or value is not ASCII is not kept.

    RFC 6265 allows ASCII only; browsers differ on the rest. httpx cannot send a non-ASCII
    Cookie header (UnicodeEncodeError) and aiohttp sends every header as UTF-8, so a latin-1
    byte could not go back as it came: neither path can send every such cookie as it was set,
    so both drop it."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return ascii_cookie(cookie) and super().set_ok(cookie, request)


def ascii_cookie(cookie: http.cookiejar.Cookie) -> bool:
    """Whether a cookie's name and value are ASCII (RFC 6265), as a request can carry them."""
    return cookie.name.isascii() and (cookie.value or "").isascii()


class AnswerJar(http.cookiejar.CookieJar):
    """The client's cookie jar: an answer's cookies are read only when it sets some.

    httpx hands the jar every answer, and the jar reads its headers into an email Message to
    look for Set-Cookie (4 % of a worker's CPU, where almost no answer sets a cookie). The
    aiohttp transport says whether the answer has one (_SETS_COOKIE, in the request's context);
    an answer of any other transport (httpx's own, for retries) is read as before.
    """

    def extract_cookies(self, response: Any, request: urllib.request.Request) -> None:
        sets = _SETS_COOKIE.get()
        _SETS_COOKIE.set(True)  # said for this answer only
        if sets:
            super().extract_cookies(response, request)


async def _send_as_written(
    req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """An aiohttp client middleware: the request goes out with its URL as httpx wrote it.

    httpx-aiohttp hands aiohttp the URL as a string, which yarl quotes again: `%7E` went out as
    `~`, `%2E` as `.`, `%27` as `'`, `%2f` as `%2F`, `%2F` in a query as `/`, and a signed URL
    (its signature computed over the bytes as written) no longer matched. httpx has already
    made the URL valid, so aiohttp takes it as encoded (yarl's `encoded=True`), as httpx's own
    transport sends it."""
    written = _WRITTEN.get()
    if written is not None:
        import yarl

        url = yarl.URL(written, encoded=True).with_fragment(None)
        # yarl shortens an IPv6 address ([0:0:0:0:0:0:0:1] to [::1]) only when it quotes
        origin = url.origin()
        if url != req.url and (
            origin == req.url.origin() or yarl.URL(str(origin)).origin() == req.url.origin()
        ):
            req.url = url
    return await handler(req)


class Sends:
    """The requests one URL may still be sent (its attempts), and those made, aiohttp's
    resend of a dropped request included (_resend_counted)."""

    __slots__ = ("left", "made", "resent")

    def __init__(self, attempts: int) -> None:
        self.left = attempts
        self.made = 0
        self.resent = 0

    def attempt(self) -> None:
        """An attempt of the fetcher's is sent."""
        self.left -= 1
        self.made += 1

    def resend(self) -> bool:
        """Whether a request whose connection closed before any answer is sent once more:
        in place of an attempt left, or, the first time, beyond them (a kept-alive connection
        the server closed just as it was reused: the server never read the request)."""
        if self.left <= 0 and self.resent:
            return False
        self.left -= 1
        self.made += 1
        self.resent += 1
        return True


#: The Sends of the fetch in progress (Fetcher.fetch); None: aiohttp resends as it does.
SENDS: contextvars.ContextVar[Sends | None] = contextvars.ContextVar("sends", default=None)


class NotResent(Exception):
    """A request whose connection closed before any answer, not sent again: its URL has no
    attempt left (the aiohttp exception that says why is its cause)."""


async def _resend_counted(
    req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """An aiohttp client middleware: a GET whose connection closed before any answer is sent
    once more, as aiohttp itself does (RFC 9112 §9.3.1), but as one of the URL's attempts.

    aiohttp's own resend is a request the fetcher does not see: a URL whose connection is
    always dropped was asked `--retries` + 2 times. Here the middleware sends it again (the
    retry middleware of aiohttp's documentation), when the URL's Sends allows, and raises
    NotResent otherwise or if it fails again, which aiohttp does not send again."""
    import aiohttp

    sends = SENDS.get()
    if sends is None:
        return await handler(req)
    dropped = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
    try:
        return await handler(req)
    except aiohttp.ClientConnectorError:
        raise  # not connected: aiohttp sends no more either
    except dropped as exc:
        if not sends.resend():
            raise NotResent(str(exc)) from exc
    try:
        return await handler(req)
    except aiohttp.ClientConnectorError:
        raise
    except dropped as exc:
        raise NotResent(str(exc)) from exc


class _ProxyCredentials(httpx.AsyncBaseTransport):
    """A proxy transport that sends Proxy-Authorization with each plain-http request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, value: str) -> None:
        self._inner = inner
        self._value = value

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            request.headers["Proxy-Authorization"] = self._value
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def environment_proxies() -> dict[str, httpx.Proxy | None]:
    """HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY as httpx mount patterns, read as httpx
    reads them: the proxy for each pattern, or None (no proxy)."""
    found = urllib.request.getproxies()
    mounts: dict[str, httpx.Proxy | None] = {}
    for scheme in ("http", "https", "all"):
        where = found.get(scheme)
        if where:
            mounts[f"{scheme}://"] = httpx.Proxy(where if "://" in where else f"http://{where}")
    if not mounts:
        return mounts
    for name in (n.strip() for n in found.get("no", "").split(",")):
        if name == "*":
            return {}
        if not name:
            continue
        # As curl reads NO_PROXY: a name covers its subdomains, an address itself only.
        if "://" in name:
            pattern = name
        elif name.lower() == "localhost" or _is_ip(name.split("/")[0], 4) or name[:1] == "[":
            pattern = f"all://{name}"  # ([::1] and [::1]:8080 as written in a URL)
        elif _is_ip(name, 6):
            pattern = f"all://[{name}]"
        else:
            pattern = f"all://*{name}"
        try:  # what the client would refuse when it builds its mounts, said as a setting
            httpx.URL(pattern)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"NO_PROXY: cannot read {name!r}: {exc}") from None
        mounts[pattern] = None
    return mounts


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def load_cookie_jar(path: str) -> httpx.Cookies:
    """Cookies from a Netscape cookies.txt; each is sent only to its own domain and path."""
    jar = http.cookiejar.MozillaCookieJar(path)
    try:
        jar.load(ignore_discard=True, ignore_expires=False)
    except (OSError, http.cookiejar.LoadError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the cookie jar: {exc}") from None
    for cookie in jar:
        if not ascii_cookie(cookie):
            raise ConfigError(
                f"{path}: the cookie {cookie.name!r} for {cookie.domain}: names and values "
                "must be ASCII (percent-encode the others)"
            )
    return httpx.Cookies(jar)


class Redirect(Exception):
    """A redirect, raised by the response hook `stop_at_redirects` before httpx reads its
    Location: httpx's client would parse the Location first, and raise for a bad one with the
    answer lost; the fetcher judges it instead (a bad one is a `bad-redirect`)."""

    def __init__(self, status: int, headers: dict[str, str], location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.headers = headers
        self.location = location


async def _raise_redirect(response: httpx.Response) -> None:
    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
        headers, _ = read_headers(response.headers.raw)
        raise Redirect(response.status_code, headers, headers["location"])


def stop_at_redirects(client: httpx.AsyncClient, stop: bool = True) -> None:
    """Make `client.send` raise Redirect at a redirect (or, with stop=False, no longer)."""
    hooks = client.event_hooks
    hooks["response"] = [h for h in hooks["response"] if h is not _raise_redirect]
    if stop:
        hooks["response"].append(_raise_redirect)
    client.event_hooks = hooks
