"""Worker processes on PostgreSQL against one process on SQLite, on a loopback host farm.

    .venv/bin/python bench/pg_workers.py [--links 100000] [--hosts 500] [--delay 0.02]
                                          [--workers 1,2,4]

Starts a throwaway PostgreSQL cluster (tests/pg.py) and a farm of local hosts (tests/hostfarm.py,
each answering after `delay` seconds), writes a post of `links` URLs spread over the hosts, then
times `crawler check` on it: once on SQLite (in-process), then on PostgreSQL with each number of
worker processes. Prints one Markdown table: wall time, links a second, CPU of the crawler's
processes, the largest resident size among them, and the CPU of PostgreSQL's own processes.
Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostfarm import HostFarm  # noqa: E402
from tests.pg import PgCluster, find_bindir  # noqa: E402


def _db_cpu(cluster: PgCluster) -> float:
    """CPU seconds of the cluster's processes so far: the postmaster's own and its reaped
    children's (the backends of closed connections), plus its live children's."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = (cluster.data / "postmaster.pid").read_text().split()[0]
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[1] is the parent pid; 11, 12: utime, stime; 13, 14: reaped children's
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])
        elif fields[1] == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def run(args: list[str], cluster: PgCluster | None) -> dict[str, float]:
    """Run one check; its wall time, the CPU of it and its worker processes, the largest resident
    size among them (wait4's rusage of the child covers the descendants it waited for), and the
    CPU PostgreSQL's processes spent meanwhile."""
    db_before = _db_cpu(cluster) if cluster is not None else 0.0
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {err[-2000:]!r}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "db_cpu": (_db_cpu(cluster) - db_before) if cluster is not None else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--max-concurrency", type=int, default=64)
    opts = ap.parse_args()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found")
    farm = HostFarm(opts.hosts, delay=opts.delay).start()
    cluster = PgCluster(bindir).init().start().setup_roles()
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-pgbench-") as tmp:
            post = Path(tmp) / "post.md"
            urls = list(farm.urls(opts.links // opts.hosts))
            post.write_text(
                "\n\n".join(f"{u}\n\npage /{u.rsplit('/', 1)[1]}" for u in urls) + "\n",
                encoding="utf-8",
            )
            common = [
                sys.executable, "-m", "crawler", "check", str(post), "-q",
                "--max-concurrency", str(opts.max_concurrency), "--host-interval", "0",
                "--retries", "0", "--format", "json", "--report-dir", str(Path(tmp) / "r"),
            ]  # fmt: skip
            rows = []
            r = run([*common, "--db", str(Path(tmp) / "h.sqlite"), "--workers", "1"], None)
            rows.append(("SQLite", "1 (in-process)", r))
            for n in (int(x) for x in opts.workers.split(",")):
                url = cluster.url(cluster.new_database())
                label = "1 (in-process)" if n == 1 else f"{n} processes"
                rows.append(
                    ("PostgreSQL", label, run([*common, "--db", url, "--workers", str(n)], cluster))
                )
            print(f"{len(urls):,} links, {opts.hosts} hosts, {opts.delay * 1000:.0f} ms, "
                  f"max-concurrency {opts.max_concurrency}, {os.cpu_count()} cores, "
                  f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
            print(
                "| database | workers | wall s | links/s | crawler CPU s | max RSS MB | db CPU s |"
            )
            print("|---|---|---|---|---|---|---|")
            for db, label, r in rows:
                print(f"| {db} | {label} | {r['wall']:.1f} | {len(urls) / r['wall']:.0f} | "
                      f"{r['cpu']:.1f} | {r['maxrss_mb']:.0f} | {r['db_cpu']:.1f} |")  # fmt: skip
    finally:
        cluster.remove()
        farm.stop()


if __name__ == "__main__":
    main()
