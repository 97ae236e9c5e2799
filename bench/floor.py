"""floor -- the least a Python asyncio link checker does, as a reference for the benchmark.

Reads the URLs of a post (those alone on their lines), fetches each once with plain aiohttp (one
session, one connector limited to --concurrency connections, no per-host limit, as many worker
tasks pulling from one shared iterator), reads the body, takes its <title> with selectolax
(lexbor) and writes one JSON line {url, status, title} per URL ("error" added when the request
failed). No retries, no history database, no reports: what is left is the cost of the language,
the event loop, aiohttp and the parser, which `crawler check` pays too.

The stdlib event loop (the crawler's too), no uvloop. Every request is bounded by --timeout, so
it stops by itself; it exits 0 whatever the answers were.

  python bench/floor.py /tmp/crawler-bench/unthrottled/links.md /tmp/floor.jsonl --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import aiohttp
from selectolax.lexbor import LexborHTMLParser

URL_LINE = re.compile(r"^https?://\S+$", re.MULTILINE)


def post_urls(path: Path) -> list[str]:
    """The URLs alone on their lines, in the post's order."""
    return URL_LINE.findall(path.read_text(encoding="utf-8"))


def page_title(body: bytes) -> str | None:
    node = LexborHTMLParser(body).css_first("title")
    return node.text(strip=True) if node is not None else None


async def check_one(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    try:
        async with session.get(url) as resp:
            body = await resp.read()
            return {"url": url, "status": resp.status, "title": page_title(body)}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return {"url": url, "status": None, "title": None, "error": type(exc).__name__}


async def worker(session: aiohttp.ClientSession, todo: Iterator[str], out: IO[str]) -> None:
    # the workers share one iterator: a queue without the queue's bookkeeping (one event loop,
    # so next() is never interleaved)
    for url in todo:
        out.write(json.dumps(await check_one(session, url), ensure_ascii=False) + "\n")


async def run(urls: list[str], out: IO[str], concurrency: int, request_timeout: float) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout), trust_env=False
    ) as session:
        todo = iter(urls)
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(concurrency, len(urls))):
                tg.create_task(worker(session, todo, out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("post", type=Path, help="Markdown post: URLs alone on their lines")
    ap.add_argument("out", type=Path, help="JSON lines written here, one per URL")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds a request may take")
    a = ap.parse_args(argv)
    urls = post_urls(a.post)
    with a.out.open("w", encoding="utf-8") as out:
        asyncio.run(run(urls, out, a.concurrency, a.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
