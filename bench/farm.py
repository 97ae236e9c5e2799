"""farm -- a loopback web server farm for the benchmark (run as its own process).

One asyncio server listens on H loopback addresses (127.0.0.2, 127.0.0.3, ...) at one port and
answers HTTP/1.1 with keep-alive. Every counted request waits --latency-ms on the server side
(a timer, no CPU) before its answer is written, so a client sees a fixed "round trip".

Paths:
  /p/I           200, a small HTML page: <title>, meta description and a paragraph (page_meta(I))
  /__stats       JSON: requests, peak in flight overall and per host, connections (not counted)
  /__reset       zero the statistics (not counted)
  anything else  404

Safety: it binds only 127.x.y.z addresses, exits by itself after --max-seconds or
--max-requests, and when its parent process goes away.

Standard library only (uvloop is used when it is installed, for a cheaper server).

  python bench/farm.py --hosts 50 --port 18480 --latency-ms 20 --max-seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import signal
import sys
import time
from collections import defaultdict

MAX_HEAD = 16 * 1024


def host_addrs(n: int) -> list[str]:
    """The n loopback addresses of the farm: 127.0.0.2 upwards (crossing into 127.0.1.x ...)."""
    out = []
    for k in range(n):
        i = k + 2
        out.append(f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
    return out


def page_meta(ident: str) -> tuple[str, str]:
    """Title and description of page /p/IDENT (the link generator lists the same title)."""
    title = f"Async & Await 实战笔记 第 {ident} 篇"
    desc = f"摘要：第 {ident} 篇讲事件循环、连接池与标题提取，用于校验摘要。"
    return title, desc


def render_page(ident: str, pad_bytes: int = 0) -> bytes:
    """The HTML of /p/IDENT, padded with paragraphs up to about pad_bytes."""
    title, desc = page_meta(ident)
    t = html.escape(title, quote=False)
    head = (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{t}</title>"
        f'<meta name="description" content="{html.escape(desc)}">'
        "</head><body>"
        f"<h1>{t}</h1><p>{html.escape(desc, quote=False)} 正文第一段，足够长的一句话。</p>"
    )
    tail = "</body></html>\n"
    body = head.encode()
    if pad_bytes > len(body):
        filler = ("<p>" + "填充内容 lorem ipsum dolor " * 8 + "</p>\n").encode()
        body += filler * max(0, (pad_bytes - len(body) - len(tail)) // len(filler))
    return body + tail.encode()


class Stats:
    def __init__(self) -> None:
        self.inflight = 0
        self.inflight_host: dict[str, int] = defaultdict(int)
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.peak = 0
        self.peak_host: dict[str, int] = defaultdict(int)
        self.conns = 0
        self.first = 0.0
        self.last = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "inflight_now": self.inflight,
            "peak_inflight": self.peak,
            "peak_inflight_per_host": max(self.peak_host.values(), default=0),
            "connections": self.conns,
            "active_span_s": round(self.last - self.first, 3) if self.first else 0.0,
            # CLOCK_MONOTONIC is system-wide: the bench compares these with its own clock.
            "first_request_monotonic": self.first,
            "last_answer_monotonic": self.last,
        }


class Farm:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.latency = a.latency_ms / 1000.0
        self.pad = int(a.page_kb * 1024)
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.cache: dict[str, bytes] = {}

    def page(self, ident: str) -> bytes:
        b = self.cache.get(ident)
        if b is None:
            b = render_page(ident, self.pad)
            if len(self.cache) < 200_000:
                self.cache[ident] = b
        return b

    def respond(self, target: str, head: bool) -> tuple[int, bytes, str, bool]:
        """(status, body, content type, counted) for a request target."""
        path = target.split("?", 1)[0]
        if path.startswith("/__"):
            if path == "/__stats":
                return 200, json.dumps(self.stats.to_json()).encode(), "application/json", False
            if path == "/__reset":
                self.stats.reset()
                return 200, b"reset\n", "text/plain; charset=utf-8", False
            return 404, b"no such admin path\n", "text/plain; charset=utf-8", False
        if path.startswith("/p/") and path[3:].isdigit():
            return 200, self.page(path[3:]), "text/html; charset=utf-8", True
        return 404, b"not found\n", "text/plain; charset=utf-8", True


class Conn(asyncio.Protocol):
    """One client connection: requests are answered in order, each after the latency."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.buf = b""
        self.queue: list[tuple[str, str, bool]] = []
        self.busy = False
        self.closed = False
        self.host = "?"
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("sockname")
        self.host = sock[0] if sock else "?"
        self.farm.stats.conns += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._close()
                return
            head = self.buf[:end].decode("latin-1")
            self.buf = self.buf[end + 4 :]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._close()
                return
            method, target, version = parts
            keep = version == "HTTP/1.1"
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "connection":
                    v = value.strip().lower()
                    keep = "close" not in v and (keep or "keep-alive" in v)
                elif name == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        self._close()
                        return
            self.buf = self.buf[length:]  # request bodies are read and ignored
            self.queue.append((method, target, keep))
            if not self.busy:
                self._next()

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _next(self) -> None:
        if not self.queue or self.closed:
            self.busy = False
            return
        self.busy = True
        method, target, keep = self.queue.pop(0)
        farm = self.farm
        status, body, ctype, counted = farm.respond(target, method == "HEAD")
        if not counted:
            self._write(status, body, ctype, method == "HEAD", keep, False)
            return
        st = farm.stats
        now = time.monotonic()
        st.requests += 1
        st.first = st.first or now
        st.last = now
        st.inflight += 1
        st.peak = max(st.peak, st.inflight)
        n = st.inflight_host[self.host] = st.inflight_host[self.host] + 1
        if n > st.peak_host[self.host]:
            st.peak_host[self.host] = n
        if st.requests >= farm.a.max_requests:
            farm.stop.set()
        asyncio.get_running_loop().call_later(
            farm.latency, self._write, status, body, ctype, method == "HEAD", keep, True
        )

    def _write(
        self, status: int, body: bytes, ctype: str, head: bool, keep: bool, counted: bool
    ) -> None:
        st = self.farm.stats
        if counted:
            st.inflight -= 1
            st.inflight_host[self.host] -= 1
            st.last = time.monotonic()
        if self.closed or self.transport is None:
            return
        reason = {200: "OK", 404: "Not Found"}.get(status, "Status")
        conn = "keep-alive" if keep else "close"
        hdr = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {conn}\r\nServer: bench-farm\r\n\r\n"
        ).encode("latin-1")
        self.transport.write(hdr if head else hdr + body)
        if not keep:
            self._close()
            return
        self._next()


async def serve(a: argparse.Namespace) -> None:
    farm = Farm(a)
    loop = asyncio.get_running_loop()
    servers = []
    for addr in host_addrs(a.hosts):
        if not addr.startswith("127."):  # loopback only, whatever the arguments say
            raise SystemExit(f"farm: refusing non-loopback address {addr}")
        srv = await loop.create_server(
            lambda: Conn(farm), addr, a.port, reuse_address=True, backlog=4096
        )
        servers.append(srv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, farm.stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while not farm.stop.is_set():
            if os.getppid() != parent:
                farm.stop.set()
            await asyncio.sleep(1.0)

    watcher = asyncio.create_task(watch_parent())
    first, last = host_addrs(a.hosts)[0], host_addrs(a.hosts)[-1]
    print(f"ready {os.getpid()} {first}..{last}:{a.port}", flush=True)
    try:
        await asyncio.wait_for(farm.stop.wait(), timeout=a.max_seconds)
    except TimeoutError:
        print("farm: --max-seconds reached, exiting", file=sys.stderr)
    watcher.cancel()
    for srv in servers:
        srv.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--port", type=int, default=18480)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--page-kb", type=float, default=0.0, help="pad pages to about this size")
    p.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long")
    p.add_argument("--max-requests", type=int, default=5_000_000, help="exit after this many")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    a = p.parse_args(argv)
    if not 1 <= a.hosts <= 60000:
        p.error("--hosts must be 1..60000")
    if not a.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(serve(a))
            return
    asyncio.run(serve(a))


if __name__ == "__main__":
    main()
