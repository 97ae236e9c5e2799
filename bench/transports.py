"""transports -- CPU per request of the HTTP transports under the httpx API, on the bench farm.

Each transport does the same GETs through one `httpx.AsyncClient` (N requests over H hosts of
bench/farm.py, C in flight, every body read), in a fresh process, in turn, `--reps` times; the
figure is the process's CPU (user + sys) per request, the median of the reps.

  .venv/bin/python bench/transports.py                  # starts its own farm (port 18470)
  .venv/bin/python bench/transports.py --requests 5000 --reps 5

Transports: `httpx-aiohttp` (the public package's AiohttpTransport, the crawler's default),
`fetcher` (crawler.fetch.make_client: that transport over the session the fetcher sets up),
`httpx` (httpcore), `curl-cffi` (httpx-curl-cffi's AsyncCurlTransport), `pyreqwest` (pyreqwest's
httpx HttpxTransport). A transport whose package is missing is reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

NAMES = ("httpx-aiohttp", "fetcher", "httpx", "curl-cffi", "pyreqwest")


def client_for(name: str, concurrency: int) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(10.0)
    transport: httpx.AsyncBaseTransport | None = None
    if name == "fetcher":
        from crawler.config import FetchSettings
        from crawler.fetch import make_client

        return make_client(FetchSettings(max_concurrency=concurrency, transport="aiohttp"))
    if name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits, trust_env=False)
    elif name == "curl-cffi":
        from httpx_curl_cffi import AsyncCurlTransport

        transport = AsyncCurlTransport(max_connections=concurrency)
    elif name == "pyreqwest":
        from pyreqwest.client import ClientBuilder
        from pyreqwest.compatibility.httpx import HttpxTransport

        transport = HttpxTransport(ClientBuilder().max_connections(concurrency).build())
    return httpx.AsyncClient(limits=limits, timeout=timeout, transport=transport, trust_env=False)


async def _run(name: str, urls: list[str], concurrency: int) -> int:
    ok = 0
    async with client_for(name, concurrency) as client:
        it = iter(urls)

        async def lane() -> None:
            nonlocal ok
            for url in it:
                async with client.stream("GET", url) as r:
                    async for _ in r.aiter_raw():
                        pass
                    ok += r.status_code == 200

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    return ok


def one(name: str, requests: int, hosts: int, port: int, concurrency: int) -> dict[str, Any]:
    urls = [f"http://127.0.0.{2 + i % hosts}:{port}/p/{i}" for i in range(requests)]
    client_for(name, concurrency)  # imports done before the clock starts
    c0, t0 = time.process_time(), time.monotonic()
    ok = asyncio.run(_run(name, urls, concurrency))
    return {"cpu": time.process_time() - c0, "wall": time.monotonic() - t0, "ok": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=18470)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(NAMES))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.requests, a.hosts, a.port, a.concurrency)))
        return 0
    farm = subprocess.Popen(
        [sys.executable, str(HERE / "farm.py"), "--hosts", str(a.hosts), "--port", str(a.port),
         "--latency-ms", str(a.latency_ms), "--max-seconds", "1800"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert farm.stdout is not None
    farm.stdout.readline()  # "ready ..."
    names = [n for n in a.only.split(",") if n]
    got: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for rep in range(a.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                p = subprocess.run(
                    [sys.executable, __file__, "--one", name, "--requests", str(a.requests),
                     "--hosts", str(a.hosts), "--port", str(a.port),
                     "--concurrency", str(a.concurrency)],
                    capture_output=True, text=True,
                )  # fmt: skip
                if p.returncode != 0:
                    got[name].append({"error": p.stderr.strip().splitlines()[-1:]})
                    continue
                got[name].append(json.loads(p.stdout))
    finally:
        farm.terminate()
        farm.wait()
    print(f"{a.requests} GETs over {a.hosts} hosts, {a.concurrency} in flight, medians of {a.reps}")
    print(f"{'transport':<14} {'cpu s':>7} {'µs/req':>7} {'wall s':>7}  ok")
    for name in names:
        runs = [r for r in got[name] if "error" not in r]
        if not runs:
            print(f"{name:<14} failed: {got[name][0].get('error')}")
            continue
        cpu = statistics.median(r["cpu"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        print(
            f"{name:<14} {cpu:7.2f} {cpu / a.requests * 1e6:7.0f} {wall:7.2f}  "
            f"{min(r['ok'] for r in runs)}/{a.requests}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
