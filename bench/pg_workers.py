"""Worker processes on PostgreSQL against one process on SQLite, on a loopback host farm.

    .venv/bin/python bench/pg_workers.py [--links 100000] [--hosts 500] [--delay 0.02]
                                          [--workers 1,2,4] [--joined 2] [--no-sqlite]

Starts a throwaway PostgreSQL cluster (tests/pg.py) and a farm of local hosts (tests/hostfarm.py,
each answering after `delay` seconds), writes a post of `links` URLs spread over the hosts, then
times `crawler check` on it: once on SQLite (in-process), then on PostgreSQL with each number of
worker processes, then (`--joined N`) `check --workers 1` with N `crawler worker --once`
processes started by hand once the run is planned, as on other machines. Prints one Markdown
table: wall time, links a second, CPU of the crawler's processes, the largest resident size among
them (with --joined: each process's), and the CPU of PostgreSQL's own processes; --joined also
checks that every link was checked exactly once. Not a test: numbers depend on the machine and
its load.
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


def _count(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


def run_joined(
    args: list[str], url: str, joined: int, cluster: PgCluster
) -> tuple[dict[str, float], list[float]]:
    """`check` (args) plus `joined` `crawler worker --once` processes on its run, started once
    it is planned. Its figures as run()'s, and each process's peak RSS in MB (check first)."""
    db_before = _db_cpu(cluster)
    start = time.monotonic()
    check = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not _count(
        url, "SELECT count(*) FROM pg_tables WHERE tablename = 'run_urls'"
    ) or not _count(url, "SELECT count(*) FROM run_urls"):
        if check.poll() is not None:
            raise SystemExit(f"check ended before planning: {check.communicate()[1][-2000:]!r}")
        time.sleep(0.05)
    worker = [a for a in args if a in ("--max-concurrency", "--host-interval", "--retries")]
    opts = []
    for name in worker:
        opts += [name, args[args.index(name) + 1]]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "crawler", "worker", "--db", url, "--once", *opts],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(joined)
    ]
    cpu, rss = 0.0, []
    wall = 0.0
    for p in [check, *workers]:
        assert p.stderr is not None
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
        if p is check:
            wall = time.monotonic() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode not in (0, 3):
            raise SystemExit(f"{p.args} failed ({p.returncode}): {err[-2000:]!r}")
        cpu += usage.ru_utime + usage.ru_stime
        rss.append(usage.ru_maxrss / 1024)
    return {
        "wall": wall,
        "cpu": cpu,
        "maxrss_mb": max(rss),
        "db_cpu": _db_cpu(cluster) - db_before,
    }, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--max-concurrency", type=int, default=64)
    ap.add_argument("--joined", type=int, default=0, help="crawler worker processes joining")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite row")
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
            if not opts.no_sqlite:
                r = run([*common, "--db", str(Path(tmp) / "h.sqlite"), "--workers", "1"], None)
                rows.append(("SQLite", "1 (in-process)", r))
            notes = []
            if opts.joined:
                url = cluster.url(cluster.new_database())
                r, rss = run_joined(
                    [*common, "--db", url, "--workers", "1"], url, opts.joined, cluster
                )
                rows.append(("PostgreSQL", f"check --workers 1 + {opts.joined} joined", r))
                checks = _count(url, "SELECT count(*) FROM checks")
                distinct = _count(url, "SELECT count(DISTINCT url) FROM checks")
                leases = _count(url, "SELECT sum(leases) FROM run_hosts")
                notes.append(
                    f"joined: {checks:,} checks of {distinct:,} distinct URLs "
                    f"({'each once' if checks == distinct == len(urls) else 'NOT each once'}); "
                    f"peak RSS MB per process (check first): "
                    f"{', '.join(f'{x:.0f}' for x in rss)}; "
                    f"{leases} leases of {opts.hosts} hosts"
                )
            for n in (int(x) for x in opts.workers.split(",") if x):
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
            for line in notes:
                print(line)
    finally:
        cluster.remove()
        farm.stop()


if __name__ == "__main__":
    main()
