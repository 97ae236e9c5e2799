"""A lean httpx transport over one aiohttp ClientSession, written for the fetcher's GETs.

httpx stays the API (httpx.Request in, httpx.Response out, httpx exceptions); aiohttp does the
HTTP/1.1 under it, which costs less CPU per request than httpx's own stack. Unlike a general
adapter (httpx-aiohttp), this one does the per-request conversions once:

* the URL is handed to yarl as already encoded (httpx has normalised and quoted it; yarl does
  not parse and re-quote it again), so the request line carries httpx's own path and query;
* the headers become one immutable CIMultiDict per distinct header set (the client's defaults
  are the same for every request to a host), the ClientTimeout one per timeout dict;
* the session has no cookie jar of its own (httpx's client.cookies does the cookies) and does
  not decompress (the reader inflates what it reads, with a cap);
* the response body is the aiohttp payload read as it comes (`readany`), without wrappers.

aiohttp's exceptions become the httpx classes httpx-aiohttp chose (the aiohttp exception stays
the `__cause__`, which `crawler.fetch.classify_exception` reads for the precise kind).
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver
from httpx._types import CertTypes
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["AiohttpClient", "AiohttpTransport", "map_aiohttp_exception"]

#: aiohttp exception → httpx exception, as httpx-aiohttp maps them (the same table, in the same
#: order: of the matching entries, a later one wins only when its class is a subclass of the
#: chosen one, so a ClientConnectorDNSError is a ConnectTimeout there, and here too).
AIOHTTP_EXC_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ServerTimeoutError, httpx.TimeoutException),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectionError, httpx.ConnectTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
)

_mapped: dict[type[BaseException], type[httpx.TransportError] | None] = {}


def map_aiohttp_exception(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp one (raise it `from exc`), or None to let it be."""
    cls = type(exc)
    try:
        target = _mapped[cls]
    except KeyError:
        target = None
        for source, to in AIOHTTP_EXC_MAP:
            if issubclass(cls, source) and (target is None or issubclass(to, target)):
                target = to
        _mapped[cls] = target
    return None if target is None else target(str(exc))


class AiohttpResponseStream(httpx.AsyncByteStream):
    """The body of an aiohttp response: each read hands over whatever has arrived."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except Exception as exc:
            mapped = map_aiohttp_exception(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        # An unfinished body closes the connection; a finished one goes back to the pool.
        response = self._response
        try:
            response.release()
            await response.wait_for_close()
        except Exception as exc:
            mapped = map_aiohttp_exception(exc)
            if mapped is None:
                raise
            raise mapped from exc


DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_HTTP_VERSIONS: dict[object, bytes] = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}
#: Distinct header sets (and timeouts) kept converted; past this the caches start afresh.
_CACHE_MAX = 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests over one aiohttp ClientSession (made on first use, in the running loop).

    `verify`, `cert` and `trust_env` make the TLS context as httpx does (SSL_CERT_FILE is read
    with trust_env); `limits.max_connections` bounds the pool and `limits.keepalive_expiry`
    the idle connections; `proxy` sends every request through that proxy; `resolver` makes
    the session's resolver (in the running loop).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: httpx.Proxy | None = None,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        self._ssl = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        self._limits = limits
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[tuple[tuple[bytes, bytes], ...], CIMultiDictProxy[str]] = {}
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._proxy: URL | None = None
        self._proxy_headers: CIMultiDictProxy[str] | None = None
        self._proxy_auth: str | None = None
        if proxy is not None:
            self._proxy = URL(str(proxy.url))
            headers = CIMultiDict(proxy.headers.multi_items())
            if proxy.auth is not None:
                # What aiohttp's (deprecated) proxy_auth did: the credentials go with the CONNECT
                # of an https URL, and with the request itself for an http URL.
                userpass = f"{proxy.auth[0]}:{proxy.auth[1]}".encode()
                self._proxy_auth = "Basic " + base64.b64encode(userpass).decode("ascii")
                headers["Proxy-Authorization"] = self._proxy_auth
            self._proxy_headers = CIMultiDictProxy(headers)

    def _open(self) -> aiohttp.ClientSession:
        limit = self._limits.max_connections
        connector = aiohttp.TCPConnector(
            ssl=self._ssl,
            limit=100 if limit is None else limit,
            keepalive_timeout=self._limits.keepalive_expiry,
            resolver=None if self._resolver is None else self._resolver(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self._session

    def _aiohttp_headers(self, headers: httpx.Headers) -> CIMultiDictProxy[str]:
        key = tuple(headers.raw)
        try:
            return self._headers[key]
        except KeyError:
            if len(self._headers) >= _CACHE_MAX:
                self._headers.clear()
            # multi_items: repeated headers stay repeated; values decoded as httpx encoded them
            out = self._headers[key] = CIMultiDictProxy(CIMultiDict(headers.multi_items()))
            return out

    def _timeout(self, extensions: dict[str, Any]) -> aiohttp.ClientTimeout:
        t = extensions.get("timeout") or {}
        key: tuple[float | None, ...] = (t.get("connect"), t.get("read"), t.get("pool"))
        try:
            return self._timeouts[key]
        except KeyError:
            if len(self._timeouts) >= _CACHE_MAX:
                self._timeouts.clear()
            # httpx's pool timeout bounds aiohttp's connect (waiting for a pooled connection
            # included); its connect the socket's connect; its read each read.
            out = self._timeouts[key] = aiohttp.ClientTimeout(
                sock_connect=key[0], sock_read=key[1], connect=key[2]
            )
            return out

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        method = request.method
        extensions = request.extensions
        data: Any
        try:
            data = request.content or None  # b"" (no body) for the fetcher's GETs
        except httpx.RequestNotRead:
            data = request.stream
            request.headers.pop("transfer-encoding", None)  # aiohttp chunks it itself
        try:
            url = URL(str(request.url), encoded=True)
            headers: CIMultiDictProxy[str] | CIMultiDict[str]
            headers = self._aiohttp_headers(request.headers)
            kwargs: dict[str, Any] = {}
            sni = extensions.get("sni_hostname")
            if sni is not None:
                kwargs["server_hostname"] = sni
            if self._proxy is not None:
                kwargs["proxy"] = self._proxy
                kwargs["proxy_headers"] = self._proxy_headers
                if self._proxy_auth is not None and url.scheme == "http":
                    headers = CIMultiDict(headers)
                    headers["Proxy-Authorization"] = self._proxy_auth
            response = await session._request(  # what request() awaits
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=self._timeout(extensions),
                **kwargs,
            )
        except Exception as exc:
            mapped = map_aiohttp_exception(exc)
            if mapped is None:
                raise
            raise mapped from exc
        ext: dict[str, Any] = {"http_version": _HTTP_VERSIONS.get(response.version, b"HTTP/1.1")}
        if response.reason:
            ext["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=AiohttpResponseStream(response),
            request=request,
            extensions=ext,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AiohttpClient(httpx.AsyncClient):
    """An httpx.AsyncClient whose default and proxy transports are `AiohttpTransport`s.

    (A `transport=` given to the constructor is used as it is; proxy mounts from the
    environment, with trust_env, get an AiohttpTransport through that proxy.)
    """

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return AiohttpTransport(verify=verify, cert=cert, trust_env=trust_env, limits=limits)

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> httpx.AsyncBaseTransport:
        return AiohttpTransport(
            verify=verify, cert=cert, trust_env=trust_env, limits=limits, proxy=proxy
        )
