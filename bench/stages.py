"""stages -- the crawler's own stages on N links, without the network: CPU and memory of each.

`crawler check` is timed as a whole by bench/run.py; this runs its stages in one process with
the fetch replaced by a generator that answers at once (as the farm's pages would read), so
what is left is the crawler's own work: reading the post, the pipeline (classify, history, the
SQLite writes), the reports. For each stage: CPU seconds and the process's RSS after it (and
the peak so far); with --trace, the largest live allocations when the run ends.

  .venv/bin/python bench/stages.py                       # 10,000 links / 50 hosts
  .venv/bin/python bench/stages.py --links 100000 --hosts 500
  .venv/bin/python bench/stages.py --extract             # pages really extracted (selectolax)
  .venv/bin/python -m cProfile -s tottime bench/stages.py | head -40
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True

from farm import page_meta, render_page  # noqa: E402
from run import write_post  # noqa: E402


def _rss_mb() -> tuple[float, float, float]:
    """(current, peak, peak since the last _reset_peak) resident set size of this process, MB."""
    now = hwm = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, hwm


def _reset_peak() -> None:
    """Start VmHWM (the peak RSS /proc reports) again from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def fake_fetcher(extract: bool) -> type[Any]:
    """A Fetcher that answers every URL at once, as the farm would (status, headers, page);
    without `extract`, reading a page is replaced by a lookup of what it says."""
    import crawler.engine as engine
    from crawler.types import FetchResult, PageKind, PageMeta

    class FakeFetcher:
        in_flight = 0  # answers at once: nothing is ever on the wire

        def __init__(self, settings: object, **_: object) -> None:
            self.n = 0

        async def __aenter__(self) -> FakeFetcher:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        async def fetch(self, url: str) -> FetchResult:
            self.n += 1
            if self.n % 64 == 0:
                await asyncio.sleep(0)  # let the periodic flush run, as the network would
            body = render_page(url.rsplit("/", 1)[1])
            return FetchResult(
                url=url,
                final_url=url,
                status=200,
                headers={
                    "content-type": "text/html; charset=utf-8",
                    "content-length": str(len(body)),
                    "server": "Python/3.11 aiohttp/3",
                },
                body=body,
                elapsed_ms=21,
                fetched_at=datetime.now(UTC),
            )

    if not extract:

        def read_page(result: FetchResult, with_hash: bool = True, *_: Any) -> PageMeta | None:
            title, desc = page_meta(result.url.rsplit("/", 1)[1])
            return PageMeta(title=title, summary=desc, kind=PageKind.ARTICLE)

        engine.read_page = read_page  # type: ignore[assignment]
    return FakeFetcher


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--links", type=int, default=10_000)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--extract", action="store_true", help="extract the farm's pages for real")
    ap.add_argument("--no-history", action="store_true", help="run without the SQLite history")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: what is live at the end")
    ap.add_argument("--formats", default="json,md,html,issue", help="the reports written")
    a = ap.parse_args(argv)

    if a.trace:
        import tracemalloc

        tracemalloc.start(1)
    stages: list[tuple[str, float, float, float, float]] = []

    def stage(name: str, since: float) -> float:
        now = time.process_time()
        stages.append((name, now - since, *_rss_mb()))
        _reset_peak()  # the next stage's own peak
        return now

    t = time.process_time()
    import crawler.pipeline as pipeline
    from crawler.config import FetchSettings
    from crawler.post import read_post
    from crawler.report import write_reports
    from crawler.store import Store

    t = stage("imports", t)
    work = Path(tempfile.mkdtemp(prefix="crawler-stages-"))
    post = work / "links.md"
    write_post(post, a.links, a.hosts, 18480)
    t = time.process_time()
    links = read_post(post)[1]
    t = stage("read the post", t)

    import crawler.engine as engine

    engine.fetch.Fetcher = fake_fetcher(a.extract)  # type: ignore[misc]
    store = None
    if not a.no_history:
        store = Store.open(work / "history.sqlite")
        store.lock()
    planned = iter(links)  # as `crawler check`: the links go once the run is planned
    del links
    run = asyncio.run(
        pipeline.check_links(planned, FetchSettings(), sources=[str(post)], store=store)
    )
    if store is not None:
        store.close()
    t = stage("pipeline" + (" + extract" if a.extract else ""), t)
    if a.trace:
        gc.collect()
        snap = tracemalloc.take_snapshot()
    write_reports(run, work, a.formats.split(","), aside=False)  # one process: its CPU, its RSS
    stage("reports", t)

    print(f"{a.links:,} links over {a.hosts} hosts ({work})")
    print(f"{'stage':<26} {'cpu s':>7} {'rss MB':>8} {'stage peak':>10} {'peak MB':>8}")
    for name, cpu, now, peak, own in stages:
        print(f"{name:<26} {cpu:7.3f} {now:8.1f} {own:10.1f} {peak:8.1f}")
    if a.trace:
        stats = snap.statistics("lineno")
        total = sum(s.size for s in stats)
        print(f"\nlive when the run ends: {total / 1e6:.1f} MB, {total / a.links:.0f} B per link")
        for s in stats[:15]:
            print(f"{s.size / 1e6:7.2f} MB {s.count:8d}  {s.traceback}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
