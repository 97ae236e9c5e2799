"""A forward proxy on 127.0.0.1 for the tests (mitmproxy is not a test dependency).

A plain-http request in absolute form (`GET http://host:port/path`) goes on to its host in
origin form, the Host header made the target's and the Proxy-* headers left out; `CONNECT
host:port` opens a tunnel. With `credentials` ("user:pass") a request without the matching
Proxy-Authorization gets a 407; with `tls` the proxy itself speaks HTTPS. Every request the
proxy reads is noted in `seen` (method, target, Proxy-Authorization or None), in order.
It runs its own event loop in a daemon thread, as the test servers run theirs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from typing import Self

_HOP = (b"proxy-authorization", b"proxy-connection")


class LocalProxy:
    """The proxy; start() runs it, stop() ends it and every connection it holds."""

    def __init__(self, credentials: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.expected = (
            None if credentials is None else b"Basic " + base64.b64encode(credentials.encode())
        )
        self.seen: list[tuple[str, str, str | None]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls), self._loop
        )
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def end() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(end(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[bytes, asyncio.StreamWriter, asyncio.Task[None]] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                first, *lines = head[:-4].split(b"\r\n")
                method, target, version = first.split(b" ", 2)
                names = [line.split(b":", 1)[0].strip().lower() for line in lines]
                auth = next(
                    (
                        line.split(b":", 1)[1].strip()
                        for n, line in zip(names, lines, strict=True)
                        if n == _HOP[0]
                    ),
                    None,
                )
                self.seen.append(
                    (method.decode(), target.decode("latin-1"), auth and auth.decode("latin-1"))
                )
                if self.expected is not None and auth != self.expected:
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                        b"Connection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                if method == b"CONNECT":
                    opened = await self._open(target, writer)
                    if opened is not None:
                        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        await _pipe_both(reader, writer, *opened)
                    return
                if not target.startswith(b"http://"):
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    return
                slash = target.find(b"/", len(b"http://"))
                authority = target[len(b"http://") : slash if slash >= 0 else None]
                path = target[slash:] if slash >= 0 else b"/"
                if upstream is None or upstream[0] != authority:
                    if upstream is not None:
                        upstream[1].close()
                    opened = await self._open(
                        authority if b":" in authority.rsplit(b"]", 1)[-1] else authority + b":80",
                        writer,
                    )
                    if opened is None:
                        return
                    back = asyncio.ensure_future(_pipe(opened[0], writer, close=True))
                    upstream = (authority, opened[1], back)
                kept = [
                    line for n, line in zip(names, lines, strict=True) if n not in (*_HOP, b"host")
                ]
                upstream[1].write(
                    b"\r\n".join([method + b" " + path + b" " + version, b"Host: " + authority])
                    + b"".join(b"\r\n" + line for line in kept)
                    + b"\r\n\r\n"
                )
        finally:
            if upstream is not None:
                upstream[1].close()
                upstream[2].cancel()
            writer.close()
            self._tasks.discard(task)

    async def _open(
        self, target: bytes, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to host:port, or None with a 502 written (the host cannot be reached)."""
        host, _, port = target.decode("latin-1").rpartition(":")
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout=10
            )
        except (OSError, ValueError, TimeoutError, UnicodeError):
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            with contextlib.suppress(OSError):
                await writer.drain()
            return None


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, close: bool = False
) -> None:
    """Bytes from `reader` to `writer` until the end; with `close`, the writer closed then."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        if close:
            writer.close()
        else:
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """A tunnel: both ways until either side closes, then both closed."""
    ways = [
        asyncio.ensure_future(_pipe(reader, up_writer, close=True)),
        asyncio.ensure_future(_pipe(up_reader, writer, close=True)),
    ]
    try:
        await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for way in ways:
            way.cancel()
        await asyncio.gather(*ways, return_exceptions=True)
        up_writer.close()
        writer.close()
