"""reports -- the CPU and memory of writing each report format of a big run, from a real history.

Builds (once, then reuses) a SQLite history of several runs of the whole blog
(`../shared/blog/_posts`, 24,995 links; or a generated post of --links over --hosts) without the
network: each URL gets an answer drawn from its hash (mostly alive and matching its listed title;
some changed titles, 404s, 5xx, permanent redirects, 403s, timeouts; a tenth drawn again at each
run, so the later runs have newly broken and recovered links, streaks and a trend), judged and
written by the engine's own `judge` and `Store.write_finished`. Then, for each format, a child
process reads the last run back and writes the report: once with the checks in memory
(`load_run()`), once streamed from the history (`load_run(stream=True)`, what `crawler check`
and `crawler report` do). Each line: the CPU seconds (user+sys, the child's own clock around the
report alone; the in-memory load is shown apart), and the child's peak RSS.

  .venv/bin/python bench/reports.py                       # the whole blog, every format
  .venv/bin/python bench/reports.py --links 5000 --hosts 200 --formats html
  .venv/bin/python bench/reports.py --profile html        # cProfile of the streamed html report
  .venv/bin/python bench/reports.py --links 10000 --end   # crawler check's end after its workers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
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

BLOG = HERE.parent.parent / "shared" / "blog" / "_posts"
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
GENERATOR = 1  # bump when the history drawn changes: a cached one is made again


def build_history(db: Path, inputs: list[str], runs: int) -> dict[str, Any]:
    """Write `runs` runs of the inputs' web links into a new history at db, a day apart."""
    from crawler.inputs import load_links
    from crawler.local import split
    from tests.factories import write_history

    found = load_links(inputs, every=True)
    links, _ = split(found.links)
    write_history(db, links, found.sources, runs, T0)
    return {"links": len(links), "urls": len({k.url for k in links}), "sources": len(found.sources)}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(db: str, mode: str, fmt: str, out: str) -> None:
    """One measurement: read the last run (mode: memory | stream), write one format."""
    from crawler.config import ALL_FORMATS
    from crawler.report import write_reports
    from crawler.store import Store

    formats = list(ALL_FORMATS) if fmt == "all" else [fmt]
    store = Store.open(db)
    before = _rss_mb()
    t = time.process_time()
    run = store.load_run(stream=mode == "stream")
    store.close()
    load = time.process_time() - t
    t = time.process_time()
    write_reports(run, out, formats)
    cpu = time.process_time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load": load, "cpu": cpu, "peak": peak, "before": before}))


def end_of_run(db: str, inputs: list[str], formats: list[str], out: str) -> None:
    """One measurement of `crawler check`'s end after the workers: the run read back from the
    history (with the store's links, as check_links returns it), the reports from one pass, the
    terminal's lines, the exit code (what pipeline.check_inputs and cli.check do once the last
    check is written). `inputs` are not read: the parent holds no link by then."""
    from crawler.cli import _exit_code
    from crawler.pipeline import report_run
    from crawler.store import Store
    from crawler.terminal import check_lines

    before = _rss_mb()
    t = time.process_time()
    store = Store.open(db)
    run = store.load_run(text_hash=False, stream=True)
    store.close()
    paths, listed, refused = report_run(run, Path(out), formats, ("dead",))
    check_lines(run, paths, refused, True, None, listed)
    _exit_code(run, ("dead",))
    cpu = time.process_time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load": 0.0, "cpu": cpu, "peak": peak, "before": before}))


def measure(
    db: Path, mode: str, fmt: str, out: Path, inputs: list[str] | None = None
) -> dict[str, float]:
    """Run one child; its figures."""
    cmd = [sys.executable, __file__, "--child", str(db), mode, fmt, str(out), *(inputs or [])]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(text.strip().splitlines()[-1])  # type: ignore[no-any-return]


def profile(db: Path, fmt: str, out: Path, mode: str) -> None:
    """cProfile of one streamed report, top functions by own time."""
    import cProfile
    import pstats

    from crawler.report import write_reports
    from crawler.store import Store

    store = Store.open(db)
    run = store.load_run(stream=mode == "stream")
    store.close()
    prof = cProfile.Profile()
    prof.enable()
    write_reports(run, out, [fmt])
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        db, mode, fmt, out, *inputs = sys.argv[2:]
        if mode == "end":
            end_of_run(db, inputs, fmt.split("+"), out)
        else:
            child(db, mode, fmt, out)
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--posts", default=str(BLOG), help="posts to read (default: the blog)")
    ap.add_argument("--links", type=int, help="a generated post of N links instead")
    ap.add_argument("--hosts", type=int, default=50, help="hosts of the generated post")
    ap.add_argument("--runs", type=int, default=3, help="runs in the history (the last reported)")
    ap.add_argument("--formats", default="json,md,html,junit,sarif,issue,all")
    ap.add_argument("--modes", default="memory,stream")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "crawler-bench-reports"))
    ap.add_argument(
        "--end",
        metavar="FORMATS",
        nargs="?",
        const="json,md,html",
        help="crawler check's end after its workers (reports, terminal lines, exit code) with "
        "these formats (default: check's, json,md,html), --reps times, then stop",
    )
    ap.add_argument("--reps", type=int, default=1, help="--end's measurements")
    ap.add_argument("--profile", metavar="FORMAT", help="cProfile one format, then stop")
    ap.add_argument("--profile-mode", default="stream", choices=("memory", "stream"))
    a = ap.parse_args(argv)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.links:
        name = f"post-{a.links}-{a.hosts}"
        post = out / f"{name}.md"
        if not post.exists():
            from run import write_post

            write_post(post, a.links, a.hosts, 18480)
        inputs = [str(post)]
    else:
        if not Path(a.posts).is_dir():
            print(f"reports: {a.posts} not found; use --links N", file=sys.stderr)
            return 2
        name, inputs = "blog", [a.posts]
    db = out / f"{name}-r{a.runs}-g{GENERATOR}.sqlite"
    if not db.exists():
        t = time.process_time()
        tmp = db.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        info = build_history(tmp, inputs, a.runs)
        tmp.rename(db)
        print(f"history: {info} in {time.process_time() - t:.1f} s CPU -> {db}")
    reports = out / "reports"
    if a.profile:
        profile(db, a.profile, reports, a.profile_mode)
        return 0

    load = os.getloadavg()
    print(f"{db.name}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if a.end:
        for _ in range(a.reps):
            r = measure(db, "end", a.end.replace(",", "+"), reports, inputs)
            print(f"end of run ({a.end}): {r['cpu']:.2f} s CPU, peak {r['peak']:.1f} MB")
        return 0
    modes = a.modes.split(",")
    head = f"{'format':<7}" + "".join(f" {m + ' cpu s':>16} {'peak MB':>8}" for m in modes)
    if modes == ["memory", "stream"]:
        head += f" {'stream/memory':>14}"
    print(head)
    for fmt in a.formats.split(","):
        cells = []
        figures = {}
        for mode in modes:
            r = measure(db, mode, fmt, reports)
            figures[mode] = r["cpu"]
            extra = f" (+{r['load']:.2f} load)" if mode == "memory" else ""
            cells.append(f" {r['cpu']:7.2f}{extra:>9} {r['peak']:8.1f}")
        line = f"{fmt:<7}" + "".join(cells)
        if modes == ["memory", "stream"]:
            line += f" {figures['stream'] / max(figures['memory'], 1e-9):14.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
