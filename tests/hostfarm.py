"""Many local HTTP hosts in one thread: N listening sockets on 127.0.0.1, each its own host for
the crawler's politeness (host:port), each counting its hits per path and the peak of requests
in flight, so a test sees per-host limits held across processes from the server's side.

Every GET answers a small HTML page (title "page PATH") after `delay` seconds; keep-alive.
hold() keeps every request that arrives from then on in flight (its (port, path) in `held`)
until release().
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator


class HostFarm:
    """start() → urls(); stop() when done. `peaks[port]` and `hits[(port, path)]`."""

    def __init__(self, hosts: int, delay: float = 0.01) -> None:
        self.n = hosts
        self.delay = delay
        self.ports: list[int] = []
        self.hits: Counter[tuple[int, str]] = Counter()
        self.inflight: Counter[int] = Counter()
        self.peaks: Counter[int] = Counter()
        self.held: set[tuple[int, str]] = set()  # requests that arrived while holding
        self._hold: asyncio.Event | None = None  # set: released
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.Server] = []
        self._ready = threading.Event()

    async def _handle(self, port: int, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode("latin-1")
                self.hits[(port, path)] += 1
                self.inflight[port] += 1
                self.peaks[port] = max(self.peaks[port], self.inflight[port])
                try:
                    if self._hold is not None:
                        self.held.add((port, path))
                        await self._hold.wait()
                    await asyncio.sleep(self.delay)
                finally:
                    self.inflight[port] -= 1
                body = f"<html><head><title>page {path}</title></head><body><p>{path}</p>".encode()
                w.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            w.close()

    async def _start(self) -> None:
        for _ in range(self.n):
            srv = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self._servers.append(srv)
            self.ports.append(srv.sockets[0].getsockname()[1])

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await self._handle(w.get_extra_info("sockname")[1], r, w)

    def start(self) -> HostFarm:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        return self

    def stop(self) -> None:
        async def close() -> None:
            for s in self._servers:
                s.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def hold(self) -> None:
        """Hold every request that arrives from now on, until release()."""

        async def hold() -> None:
            self._hold = asyncio.Event()

        asyncio.run_coroutine_threadsafe(hold(), self._loop).result()

    def release(self) -> None:
        """Answer the held requests (and the later ones as usual)."""

        async def release() -> None:
            if self._hold is not None:
                self._hold.set()
                self._hold = None

        asyncio.run_coroutine_threadsafe(release(), self._loop).result()

    def urls(self, per_host: int, tag: str = "") -> Iterator[str]:
        """per_host URLs on every host, the hosts interleaved."""
        for i in range(per_host):
            for port in self.ports:
                yield f"http://127.0.0.1:{port}/{tag}{i}"
