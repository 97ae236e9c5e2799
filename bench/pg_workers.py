"""Worker processes on PostgreSQL against one process on SQLite, on a loopback host farm.

    .venv/bin/python bench/pg_workers.py [--links 100000] [--hosts 500] [--delay 0.02]
                                          [--workers 1,2,4] [--joined 2] [--no-sqlite]
                                          [--check-workers 1] [--sessions] [--statements N]

Starts a throwaway PostgreSQL cluster (tests/pg.py) and a farm of local hosts (tests/hostfarm.py,
each answering after `delay` seconds), writes a post of `links` URLs spread over the hosts, then
times `crawler check` on it: once on SQLite (in-process), then on PostgreSQL with each number of
worker processes, then (`--joined N`) `check --workers 1` with N `crawler worker --once`
processes started by hand once the run is planned, as on other machines. Prints one Markdown
table: the run's time from its plan to its end (runs.started_at → finished_at) and links a
second over it, the whole command's wall time (the reports included), CPU of the crawler's
processes (all, and each worker's), the largest resident size among them and each worker's peak
RSS (VmHWM, sampled from /proc), the CPU of PostgreSQL's own processes, the CPU of this process
(the host farm's thread, mostly) and the load average (1 min) at the start and the end of the
row; every row also checks that each link was checked exactly once. `--statements N` loads
pg_stat_statements and lists each PostgreSQL row's N statements that took the server the most
time. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

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


def _own_cpu() -> float:
    """CPU seconds of this process so far: the host farm's thread, mostly (the samplers of
    /proc and the waits for the check add little)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Workers:
    """Each worker process below a check (`crawler worker`, or forked by the check), sampled
    from /proc every `interval` s by a thread: its peak RSS (VmHWM) and CPU seconds at the last
    sample before it ended (so up to `interval` s of a worker's CPU may be missed; the row's
    total CPU comes from wait4)."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root = root
        self.root_cmd = Path(f"/proc/{root}/cmdline").read_bytes().split(b"\0")
        self.interval = interval
        self.seen: dict[int, tuple[int, float]] = {}  # pid: (peak RSS kB, CPU s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self.interval):
            for pid in self._children():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                if b"worker" not in cmd and cmd != self.root_cmd:
                    continue  # a worker is exec'd (`crawler worker`) or forked by the check
                hwm = next((int(ln.split()[1]) for ln in status.splitlines()
                            if ln.startswith("VmHWM:")), 0)  # fmt: skip
                self.seen[pid] = (hwm, (int(stat[11]) + int(stat[12])) / tick)

    def _children(self) -> list[int]:
        found = []
        for task in Path(f"/proc/{self.root}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found += [int(x) for x in task.read_text().split()]
        return found

    def stop(self) -> list[tuple[float, float]]:
        """(peak RSS MB, CPU s) of each worker seen, in the order they started."""
        self._stop.set()
        self._thread.join()
        return [(kb / 1024, cpu) for _, (kb, cpu) in sorted(self.seen.items())]


def run(args: list[str], cluster: PgCluster | None) -> dict[str, Any]:
    """Run one check; its wall time, the CPU of it and its worker processes, the largest resident
    size among them (wait4's rusage of the child covers the descendants it waited for), each
    worker process's peak RSS and CPU, the CPU PostgreSQL's processes spent meanwhile and the
    load average before and after."""
    load = os.getloadavg()[0]
    db_before = _db_cpu(cluster) if cluster is not None else 0.0
    farm_before = _own_cpu()
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers = Workers(proc.pid)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    per_worker = workers.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {err[-2000:]!r}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "db_cpu": (_db_cpu(cluster) - db_before) if cluster is not None else 0.0,
        "farm_cpu": _own_cpu() - farm_before,
        "workers": per_worker,
        "load": (load, os.getloadavg()[0]),
    }


def _row(url: str, sql: str) -> Any:
    """The first row of a query on the database at url (PostgreSQL) or path (SQLite)."""
    if not url.startswith("postgresql://"):
        with contextlib.closing(sqlite3.connect(url)) as db:
            return db.execute(sql).fetchone()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()  # type: ignore[arg-type]


def _count(url: str, sql: str) -> int:
    row = _row(url, sql)
    return int(row[0] or 0) if row else 0


def _after_run(db: str, links: int) -> dict[str, Any]:
    """Whether the run in db checked each of its links exactly once, and how long the run took
    from its plan to its end (the reports that check writes after are not in it)."""
    checks = _count(db, "SELECT count(*) FROM checks")
    distinct = _count(db, "SELECT count(DISTINCT url) FROM checks")
    once = checks == distinct == links
    start, end = _row(db, "SELECT started_at, finished_at FROM runs ORDER BY id DESC LIMIT 1")
    return {
        "once": "yes" if once else f"NO ({checks:,} checks, {distinct:,} URLs)",
        "run": (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(),
    }


def _statements(cluster: PgCluster, url: str, label: str, top: int) -> list[str]:
    """The statements run on url's database that took the server the most time (the whole
    run's: each row has a database of its own), as Markdown lines, and their totals."""
    import psycopg

    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url(user="postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT calls, total_exec_time + total_plan_time AS ms, rows, query "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = %s ORDER BY ms DESC",
            (dbname,),
        ).fetchall()
    calls = sum(r[0] for r in rows)
    ms = sum(r[1] for r in rows)
    out = [
        f"{label}: {calls:,} statements, {ms / 1000:.1f} s planning and executing; the top {top}:"
    ]
    for n, t, got, query in rows[:top]:
        q = " ".join(query.split())
        out.append(f"  {n:>8,} calls {t / 1000:7.2f} s {got:>9,} rows  {q[:150]}")
    return out


def run_joined(
    args: list[str], url: str, joined: int, cluster: PgCluster, sessions: bool = False
) -> tuple[dict[str, Any], list[float]]:
    """`check` (args) plus `joined` `crawler worker --once` processes on its run, started once
    it is planned (with `sessions`, each in a session of its own). Its figures as run()'s, and
    each process's peak RSS in MB (check first)."""
    load = os.getloadavg()[0]
    db_before = _db_cpu(cluster)
    farm_before = _own_cpu()
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
            start_new_session=sessions,
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
        "farm_cpu": _own_cpu() - farm_before,
        "workers": [],
        "load": (load, os.getloadavg()[0]),
    }, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--links", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--max-concurrency", type=int, default=64)
    ap.add_argument("--joined", type=int, default=0, help="crawler worker processes joining")
    ap.add_argument("--check-workers", type=int, default=1, help="check's own, with --joined")
    ap.add_argument(
        "--sessions",
        action="store_true",
        help="each joined worker in a session of its own (Linux's autogroup scheduling then "
        "gives each its own share of a busy machine's CPU, as a machine of its own would)",
    )
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite row")
    ap.add_argument(
        "--statements",
        type=int,
        default=0,
        metavar="N",
        help="load pg_stat_statements and print each PostgreSQL row's N statements that took "
        "the server the most time (calls, ms, rows)",
    )
    opts = ap.parse_args()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found")
    farm = HostFarm(opts.hosts, delay=opts.delay).start()
    settings = (
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
        if opts.statements
        else ""
    )
    cluster = PgCluster(bindir, settings).init().start().setup_roles()
    if opts.statements:
        cluster.admin("CREATE EXTENSION pg_stat_statements")
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
                db = str(Path(tmp) / "h.sqlite")
                r = run([*common, "--db", db, "--workers", "1"], None)
                rows.append(("SQLite", "1 (in-process)", {**r, **_after_run(db, len(urls))}))
            notes = []
            if opts.joined:
                url = cluster.url(cluster.new_database())
                own = str(opts.check_workers)
                r, rss = run_joined(
                    [*common, "--db", url, "--workers", own],
                    url,
                    opts.joined,
                    cluster,
                    opts.sessions,
                )
                r.update(_after_run(url, len(urls)))
                how = " (own sessions)" if opts.sessions else ""
                label = f"check --workers {own} + {opts.joined} joined{how}"
                rows.append(("PostgreSQL", label, r))
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
                r = run([*common, "--db", url, "--workers", str(n)], cluster)
                rows.append(("PostgreSQL", label, {**r, **_after_run(url, len(urls))}))
                if opts.statements:
                    notes += _statements(cluster, url, label, opts.statements)
            print(f"{len(urls):,} links, {opts.hosts} hosts, {opts.delay * 1000:.0f} ms, "
                  f"max-concurrency {opts.max_concurrency}, {os.cpu_count()} cores, "
                  f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
            print(
                "| database | workers | run s | links/s | wall s | crawler CPU s "
                "| CPU s per worker | max RSS MB | peak RSS MB per worker | db CPU s | farm CPU s "
                "| load | each link once |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for db, label, r in rows:
                cpus = ", ".join(f"{c:.0f}" for _, c in r["workers"]) or "—"
                mbs = ", ".join(f"{m:.0f}" for m, _ in r["workers"]) or "—"
                print(f"| {db} | {label} | {r['run']:.1f} | {len(urls) / r['run']:.0f} | "
                      f"{r['wall']:.1f} | {r['cpu']:.1f} | {cpus} | {r['maxrss_mb']:.0f} | {mbs} | "
                      f"{r['db_cpu']:.1f} | {r['farm_cpu']:.1f} | "
                      f"{r['load'][0]:.1f}–{r['load'][1]:.1f} | "
                      f"{r['once']} |")  # fmt: skip
            for line in notes:
                print(line)
    finally:
        cluster.remove()
        farm.stop()


if __name__ == "__main__":
    main()
