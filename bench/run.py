"""bench -- the crawler against lychee on a loopback server farm, each measured as a whole process.

For each profile it writes a Markdown post of N links over H hosts (the post's own layout: the URL
alone on its line, a blank line, the listed title), starts bench/farm.py in its own process on
127.0.0.2 ... with the given latency, then runs `crawler check` and, when it is installed
(`pip install -e '.[bench]'`), lychee on the same links, alternating, R times. Each run is timed
as a process tree: wall time, CPU (user + sys from wait4, which counts the descendants the run
reaped), the peak of the tree's summed PSS (sampled from /proc every 20 ms by a thread of the
bench: the crawler forks fetch workers on large runs) and ru_maxrss (the largest single process).
It prints the medians, the ratios crawler/lychee and each tool's ratio to the lower bound its
limits allow. In the unthrottled profile a third tool, bench/floor.py (plain aiohttp + a selectolax
<title>, nothing else: the least a Python asyncio checker does), runs as a reference (--no-floor:
not), with the ratios crawler/floor and floor/lychee.

Profiles:
  unthrottled  both tools (and the floor) at --concurrency in flight, no per-host limit or interval
  default      each tool at its own default politeness; the bound is what its per-host
               interval / per-host concurrency / global limit allow at this latency
  scale        --scale-links over --scale-hosts, crawler only, unthrottled: peak memory

  make bench                                    # unthrottled + default, 10,000 links / 50 hosts
  make bench ARGS="--profiles scale"            # 100,000 links / 500 hosts, crawler only
  .venv/bin/python bench/run.py --links 2000 --hosts 20 --reps 1 --profiles unthrottled

Nothing leaves 127.0.0.0/8: the farm binds only loopback addresses, proxies are switched off
for both tools, and the farm exits by itself after --farm-max-seconds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True

from farm import host_addrs, page_meta  # noqa: E402

BIN = Path(sys.executable).parent
# lychee 0.24.2's defaults (lychee --help): global 128, per host 10 in flight, 50 ms apart.
LYCHEE_DEFAULTS = {"max_concurrency": 128, "host_concurrency": 10, "host_interval": 0.05}


# ------------------------------------------------------------------------------------ inputs


def write_post(path: Path, n: int, hosts: int, port: int) -> None:
    """N links round-robin over the hosts, in the post's URL / blank / title layout."""
    addrs = host_addrs(hosts)
    with path.open("w", encoding="utf-8") as f:
        f.write(f"# 基准测试：{n} 条链接，{hosts} 个主机\n\n## 参考\n\n")
        for i in range(n):
            title, _ = page_meta(str(i))
            f.write(f"http://{addrs[i % hosts]}:{port}/p/{i}\n\n{title}\n\n")


def lower_bound(
    n: int, hosts: int, latency: float, max_conc: int, host_conc: int, interval: float
) -> float:
    """Least wall time the limits allow: every request takes `latency`, nothing else costs."""
    per_host = math.ceil(n / hosts)
    by_interval = (per_host - 1) * interval + latency
    by_host_conc = math.ceil(per_host / host_conc) * latency
    by_global = math.ceil(n / max_conc) * latency
    return max(by_interval, by_host_conc, by_global)


# ------------------------------------------------------------------------------------ the farm


class Farm:
    """bench/farm.py in its own process, stopped by PID (and by its own time limit)."""

    def __init__(self, hosts: int, port: int, latency_ms: float, max_seconds: float, kb: float):
        self.port = port
        self.admin = f"http://{host_addrs(1)[0]}:{port}"
        cmd = [
            sys.executable,
            str(HERE / "farm.py"),
            f"--hosts={hosts}",
            f"--port={port}",
            f"--latency-ms={latency_ms}",
            f"--max-seconds={max_seconds}",
            f"--page-kb={kb}",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise SystemExit(f"bench: the farm did not start ({line.strip()!r})")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def cpu(self) -> float:
        """CPU seconds the farm has used so far (user + sys)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def admin_get(self, path: str) -> dict[str, object]:
        with self.opener.open(self.admin + path, timeout=10) as r:
            body = r.read()
        try:
            out: dict[str, object] = json.loads(body)
        except ValueError:
            out = {}
        return out

    def wait_idle(self, limit: float = 30.0) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if not self.admin_get("/__stats").get("inflight_now"):
                return
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def port_is_free(port: int, hosts: int) -> bool:
    for addr in {host_addrs(1)[0], host_addrs(hosts)[-1]}:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


# ------------------------------------------------------------------------------------ one run


class TreeMemory:
    """Peak memory of a process and all its descendants, sampled from /proc by a bench thread.

    Every `interval` s (20 ms by default; longer when one sample costs more than a fifth of
    that, so the thread never takes much more than a fifth of a core) it lists the tree (the
    root and everything below it, through /proc/<pid>/task/*/children, or by scanning
    /proc/*/stat for the ppid where the kernel has no children files) and sums each process's
    PSS (the `Pss:` line of /proc/<pid>/smaps_rollup).
    PSS charges a page shared by k processes 1/k to each, so the sum over forked workers that
    share copy-on-write pages is the memory the tree really holds; a sum of RSS would count the
    shared pages k times, and ru_maxrss (wait4) is only the largest single process. Without
    smaps_rollup (an older kernel, permissions) it sums VmRSS from /proc/<pid>/status instead
    (an overestimate for forked trees); without /proc it does not sample and the run falls back
    to ru_maxrss. It keeps the peak of the sum, the number of processes at that peak and the
    processes seen. The loop ends when stop() is called (after wait4 has reaped the child).
    Start it after Popen has returned: by then the child has exec'd (Popen waits for that), so
    the bench's own image in the forked child is never counted.
    """

    INTERVAL = 0.02

    def __init__(self, pid: int, interval: float = INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.procs_at_peak = 0
        self.split_kb: list[int] = []  # each process's PSS at that peak, the root first
        self.peak_t = 0.0  # when it was seen (time.monotonic)
        self.procs_max = 0
        # the largest VmHWM of a process of the tree: its own peak RSS since exec. ru_maxrss
        # is not that: a child spawned by vfork (subprocess does) inherits the bench's own
        # peak RSS as a floor at exec, so it never reads below the bench's VmHWM.
        self.hwm_kb = 0
        self.samples = 0  # samples that read at least one process
        self.seen: set[int] = set()
        self.cpu = 0.0  # the sampler thread's own CPU seconds
        # "pss", "rss" or None (no /proc, or sampling switched off: nothing sampled)
        self.source = self._probe() if interval > 0 else None
        me = os.getpid()
        self._children_files = os.path.exists(f"/proc/{me}/task/{me}/children")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def _probe(self) -> str | None:
        for pid in ("self", str(self.pid)):
            try:
                _kb_field(f"/proc/{pid}/smaps_rollup", b"Pss:")
            except ProcessLookupError:  # a zombie already: it has no memory left to show
                pass
            except OSError:
                break
        else:
            return "pss"
        try:
            _kb_field("/proc/self/status", b"VmRSS:")
        except OSError:
            return None
        return "rss"

    def start(self) -> TreeMemory:
        if self.source is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        c0 = time.thread_time()
        try:
            while True:
                t = time.monotonic()
                self._sample()
                if self._stop.wait(max(self.interval, 5 * (time.monotonic() - t))):
                    break
        finally:
            self.cpu = time.thread_time() - c0

    def _sample(self) -> None:
        total, n, split = 0, 0, []
        for pid in self._tree():
            try:
                if self.source == "pss":
                    kb = _kb_field(f"/proc/{pid}/smaps_rollup", b"Pss:")
                    hwm = _kb_field(f"/proc/{pid}/status", b"VmHWM:")
                else:
                    kb, hwm = _kb_fields(f"/proc/{pid}/status", b"VmRSS:", b"VmHWM:")
            except OSError:  # gone between the listing and the read, or a zombie
                continue
            total += kb
            split.append(kb)
            self.hwm_kb = max(self.hwm_kb, hwm)
            n += 1
            self.seen.add(pid)
        if not n:
            return
        self.samples += 1
        self.procs_max = max(self.procs_max, n)
        if total > self.peak_kb:
            self.peak_kb, self.procs_at_peak = total, n
            self.split_kb, self.peak_t = split, time.monotonic()

    def _tree(self) -> list[int]:
        """The root and all its descendants (those still attached to it: an orphan that was
        reparented to init is no longer found)."""
        kids: dict[int, list[int]] = {}
        if not self._children_files:
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    with open(f"/proc/{name}/stat", "rb") as f:
                        ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                kids.setdefault(ppid, []).append(int(name))
        out, todo, seen = [], [self.pid], {self.pid}
        while todo:
            pid = todo.pop()
            out.append(pid)
            below = kids.get(pid, []) if not self._children_files else self._children(pid)
            for c in below:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return out

    @staticmethod
    def _children(pid: int) -> list[int]:
        found: list[int] = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    found += map(int, f.read().split())
        except OSError:
            pass
        return found


def _kb_field(path: str, key: bytes) -> int:
    """The kB value of the line starting with key in a /proc file (0 when there is none)."""
    return _kb_fields(path, key)[0]


def _kb_fields(path: str, *keys: bytes) -> list[int]:
    with open(path, "rb") as f:
        data = f.read()
    out = [0] * len(keys)
    for line in data.splitlines():
        for i, key in enumerate(keys):
            if line.startswith(key):
                out[i] = int(line.split()[1])
    return out


@dataclass
class Sample:
    tool: str
    rep: int
    wall: float
    cpu: float
    mem_mb: float  # peak of the summed PSS over the process tree (see mem_source)
    mem_source: str  # "pss", "rss" (sum of VmRSS) or "ru_maxrss" (nothing sampled)
    procs: int  # processes in the tree at that peak
    procs_seen: int  # distinct processes seen in the tree during the run
    maxrss_mb: float  # ru_maxrss from wait4: the largest single process (floored, see hwm)
    rc: int
    farm_cpu: float
    sampler_cpu: float = 0.0  # CPU seconds the bench's sampling thread used
    mem_samples: int = 0  # samples taken of the tree
    hwm_mb: float = 0.0  # largest VmHWM seen in the tree: single-process peak, no bench floor
    server: dict[str, object] = field(default_factory=dict)
    checked: dict[str, object] = field(default_factory=dict)
    #: each process's PSS at the tree's peak (the run's own process first) and when, s from start
    mem_split: list[float] = field(default_factory=list)
    peak_s: float = 0.0


@dataclass
class Measured:
    wall: float
    cpu: float
    mem_mb: float
    mem_source: str
    procs: int
    procs_seen: int
    maxrss_mb: float
    sampler_cpu: float
    mem_samples: int
    hwm_mb: float
    rc: int
    t0: float
    t1: float
    mem_split: list[float]
    peak_s: float


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


def measure(
    cmd: list[str],
    cwd: Path,
    log: Path,
    limit: float,
    env: dict[str, str] | None = None,
    mem_interval: float = TreeMemory.INTERVAL,
) -> Measured:
    """Run cmd as a child: wall s, user+sys CPU s (wait4), the peak PSS of its process tree
    (TreeMemory), ru_maxrss, exit code, and the monotonic start and end of the process."""
    with log.open("wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**clean_env(), **(env or {})}
        )
        mem = TreeMemory(proc.pid, mem_interval).start()  # Popen returns once the child has exec'd
        timer = threading.Timer(limit, lambda: os.kill(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            # The rusage of wait4 covers the child and every descendant that was waited for
            # (RUSAGE_CHILDREN semantics: a reaped grandchild's times are added to its parent's
            # children times, which the parent's own rusage passes on when it is reaped). The
            # crawler reaps its fetch workers, so cpu is the whole tree's; a descendant left
            # running or unreaped (reparented to init) would be missing. ru_maxrss is different:
            # it is the max of the single processes, not a sum, hence TreeMemory; and it is
            # never below the bench's own peak RSS (vfork + exec, see TreeMemory.hwm_kb).
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            mem.stop()
        t1 = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    maxrss = ru.ru_maxrss / 1024.0
    if mem.samples:
        mem_mb, source = mem.peak_kb / 1024.0, mem.source or "ru_maxrss"
    else:  # no /proc, or the run ended before the first sample
        mem_mb, source = maxrss, "ru_maxrss"
    return Measured(
        wall=t1 - t0,
        cpu=ru.ru_utime + ru.ru_stime,
        mem_mb=mem_mb,
        mem_source=source,
        procs=mem.procs_at_peak or 1,
        procs_seen=len(mem.seen) or 1,
        maxrss_mb=maxrss,
        sampler_cpu=mem.cpu,
        mem_samples=mem.samples,
        hwm_mb=mem.hwm_kb / 1024.0,
        rc=proc.returncode,
        t0=t0,
        t1=t1,
        mem_split=[kb / 1024.0 for kb in mem.split_kb],
        peak_s=mem.peak_t - t0 if mem.peak_t else 0.0,
    )


def crawler_cmd(
    post: Path, out: Path, politeness: dict[str, float] | None, extra: str
) -> list[str]:
    cmd = [str(BIN / "crawler"), "check", str(post), "--report-dir", str(out), "-q"]
    cmd += ["--timeout", "5", "--retries", "2"]
    if politeness is not None:
        cmd += [
            "--max-concurrency",
            str(int(politeness["max_concurrency"])),
            "--host-concurrency",
            str(int(politeness["host_concurrency"])),
            "--host-interval",
            f"{politeness['host_interval']:g}",
        ]
    return cmd + shlex.split(extra)


def lychee_cmd(
    lychee: str, post: Path, out: Path, politeness: dict[str, float] | None
) -> list[str]:
    cmd = [lychee, "--no-progress", "--format", "json", "--output", str(out / "lychee.json")]
    cmd += ["--timeout", "5", "--max-retries", "2", "--max-redirects", "10"]
    if politeness is not None:
        ms = int(round(politeness["host_interval"] * 1000))
        cmd += [
            "--max-concurrency",
            str(int(politeness["max_concurrency"])),
            "--host-concurrency",
            str(int(politeness["host_concurrency"])),
            "--host-request-interval",
            f"{ms}ms",
        ]
    return cmd + [str(post)]


def floor_cmd(post: Path, out: Path, limits: dict[str, float]) -> list[str]:
    """bench/floor.py: one GET a URL, its <title>, one JSON line each (the crawler's timeout)."""
    cmd = [sys.executable, str(HERE / "floor.py"), str(post), str(out / "floor.jsonl")]
    return cmd + ["--concurrency", str(int(limits["max_concurrency"])), "--timeout", "5"]


def check_crawler(out: Path) -> dict[str, object]:
    """What the crawler's report says: verdicts, titles and summaries found, files written."""
    try:
        data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": f"no report.json: {exc}"}
    links = data.get("links", [])
    files = {
        p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file() and p.name[0] != "."
    }
    return {
        "links": len(links),
        "ok": sum(1 for x in links if x.get("verdict") == "ok"),
        "titles": sum(1 for x in links if x.get("title")),
        "summaries": sum(1 for x in links if x.get("summary")),
        "files": files,
    }


def check_lychee(out: Path) -> dict[str, object]:
    try:
        data = json.loads((out / "lychee.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": f"no lychee.json: {exc}"}
    return {k: data.get(k) for k in ("total", "successful", "errors", "timeouts")}


def check_floor(out: Path) -> dict[str, object]:
    """floor.jsonl: lines written, answers 200, non-empty titles."""
    try:
        with (out / "floor.jsonl").open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as exc:
        return {"error": f"no floor.jsonl: {exc}"}
    return {
        "lines": len(rows),
        "ok": sum(1 for x in rows if x.get("status") == 200),
        "titles": sum(1 for x in rows if x.get("title")),
    }


CHECKS = {"crawler": check_crawler, "lychee": check_lychee, "floor": check_floor}


# ------------------------------------------------------------------------------------ profiles


@dataclass
class Profile:
    name: str
    links: int
    hosts: int
    crawler_limits: dict[str, float] | None  # None: the crawler's own defaults
    lychee_limits: dict[str, float] | None
    with_lychee: bool
    reps: int
    floor_limits: dict[str, float] | None = None  # bench/floor.py at these limits; None: no floor


def crawler_defaults() -> dict[str, float]:
    from crawler import config

    return {
        "max_concurrency": config.DEFAULT_MAX_CONCURRENCY,
        "host_concurrency": config.DEFAULT_HOST_CONCURRENCY,
        "host_interval": config.DEFAULT_HOST_INTERVAL,
    }


def run_profile(p: Profile, a: argparse.Namespace, lychee: str | None, work: Path) -> dict:
    latency = a.latency_ms / 1000.0
    d = work / p.name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    post = d / "links.md"
    write_post(post, p.links, p.hosts, a.port)
    if not port_is_free(a.port, p.hosts):
        raise SystemExit(f"bench: port {a.port} is taken on the farm's addresses (--port)")
    tools = ["crawler"] + (["lychee"] if lychee and p.with_lychee else [])
    tools += ["floor"] if p.floor_limits is not None else []
    print(
        f"\n== {p.name}: {p.links:,} links over {p.hosts} hosts, {a.latency_ms:g} ms latency, "
        f"{p.reps} rep(s), tools: {', '.join(tools)}",
        flush=True,
    )
    farm = Farm(p.hosts, a.port, a.latency_ms, a.farm_max_seconds, a.page_kb)
    samples: list[Sample] = []
    try:
        for rep in range(1, p.reps + 1):
            k = (rep - 1) % len(tools)  # rotate who goes first (alternate, with two tools)
            order = tools[k:] + tools[:k]
            for tool in order:
                out = d / f"{tool}-{rep}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                if tool == "crawler":
                    cmd = crawler_cmd(post, out, p.crawler_limits, a.crawler_args)
                elif tool == "floor":
                    assert p.floor_limits is not None
                    cmd = floor_cmd(post, out, p.floor_limits)
                else:
                    assert lychee is not None
                    cmd = lychee_cmd(lychee, post, out, p.lychee_limits)
                (out / "cmd.txt").write_text(shlex.join(cmd) + "\n")
                farm.wait_idle()
                farm.admin_get("/__reset")
                c0 = farm.cpu()
                # each crawler run starts its own history (CRAWLER_DB): runs stay comparable
                env = {"CRAWLER_DB": str(out / "history.sqlite")}
                m = measure(cmd, d, out / "output.txt", a.run_limit, env, a.mem_interval_ms / 1000)
                farm_cpu = farm.cpu() - c0
                farm.wait_idle()
                server = farm.admin_get("/__stats")
                first, last = (
                    server.get("first_request_monotonic"),
                    server.get("last_answer_monotonic"),
                )
                if isinstance(first, float) and isinstance(last, float) and first:
                    # where the wall time went: before the first request, requests, after
                    server["phases"] = (first - m.t0, last - first, m.t1 - last)
                checked = CHECKS[tool](out)
                s = Sample(
                    tool,
                    rep,
                    m.wall,
                    m.cpu,
                    m.mem_mb,
                    m.mem_source,
                    m.procs,
                    m.procs_seen,
                    m.maxrss_mb,
                    m.rc,
                    farm_cpu,
                    m.sampler_cpu,
                    m.mem_samples,
                    m.hwm_mb,
                    server,
                    checked,
                    m.mem_split,
                    m.peak_s,
                )
                samples.append(s)
                print(
                    f"  {tool:<8} rep {rep}: wall {m.wall:6.2f} s  cpu {m.cpu:6.2f} s  "
                    f"mem {m.mem_mb:6.1f} MB ({_procs(s)})  maxrss {m.maxrss_mb:6.1f} MB  "
                    f"rc {m.rc}  farm cpu {farm_cpu:5.2f} s  "
                    f"requests {server.get('requests')}  peak in flight "
                    f"{server.get('peak_inflight')}/{server.get('peak_inflight_per_host')} "
                    f"per host  conns {server.get('connections')}  {_checked_line(checked)}"
                    + _phases(server)
                    + _split(s),
                    flush=True,
                )
                if tool == "crawler" and not a.keep_reports:
                    for f in out.glob("report.*"):
                        f.unlink()
    finally:
        farm.stop()
    return summarize(p, samples, latency)


def _procs(s: Sample) -> str:
    """How the mem figure was taken: the source and the processes in the tree at its peak."""
    src = {"pss": "PSS", "rss": "sum of RSS", "ru_maxrss": "ru_maxrss only"}[s.mem_source]
    more = f", {s.procs_seen} seen" if s.procs_seen > s.procs else ""
    return f"{src}, {_n(s.procs, 'proc')}{more}"


def _split(s: Sample) -> str:
    """Each process's PSS at the tree's peak, the run's own process first."""
    if len(s.mem_split) < 2:
        return ""
    parts = " + ".join(f"{mb:.1f}" for mb in s.mem_split)
    return f"\n{'':20}at the peak ({s.peak_s:.1f} s in): {parts} MB (the run's process first)"


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _phases(server: dict[str, object]) -> str:
    ph = server.get("phases")
    if not isinstance(ph, tuple):
        return ""
    return (
        f"\n{'':20}phases: start → first request {ph[0]:.2f} s, requests {ph[1]:.2f} s, "
        f"last answer → exit {ph[2]:.2f} s"
    )


def _checked_line(c: dict[str, object]) -> str:
    if "error" in c:
        return f"[{c['error']}]"
    if "summaries" in c:
        return f"ok {c['ok']}/{c['links']} titles {c['titles']} summaries {c['summaries']}"
    if "lines" in c:
        return f"ok {c['ok']}/{c['lines']} titles {c['titles']}"
    return f"ok {c.get('successful')}/{c.get('total')}"


def summarize(p: Profile, samples: list[Sample], latency: float) -> dict:
    res: dict = {"profile": p.name, "links": p.links, "hosts": p.hosts, "tools": {}}
    limits = {"crawler": p.crawler_limits or crawler_defaults(), "lychee": p.lychee_limits}
    limits["lychee"] = limits["lychee"] or LYCHEE_DEFAULTS
    if p.floor_limits is not None:
        limits["floor"] = p.floor_limits
    for tool in ("crawler", "lychee", "floor"):
        ss = [s for s in samples if s.tool == tool]
        if not ss:
            continue
        lim = limits[tool]
        bound = lower_bound(
            p.links,
            p.hosts,
            latency,
            int(lim["max_concurrency"]),
            int(lim["host_concurrency"]),
            lim["host_interval"],
        )
        wall = statistics.median(s.wall for s in ss)
        res["tools"][tool] = {
            "wall_s": wall,
            "cpu_s": statistics.median(s.cpu for s in ss),
            # peak PSS summed over the process tree (mem_source says if it fell back)
            "mem_mb": statistics.median(s.mem_mb for s in ss),
            "mem_mb_max": max(s.mem_mb for s in ss),
            "mem_source": sorted({s.mem_source for s in ss}),
            "procs_max": max(s.procs for s in ss),
            "procs_seen_max": max(s.procs_seen for s in ss),
            # ru_maxrss: the largest single process of the tree
            "maxrss_mb": statistics.median(s.maxrss_mb for s in ss),
            "maxrss_mb_max": max(s.maxrss_mb for s in ss),
            "hwm_mb_max": max(s.hwm_mb for s in ss),  # the same without the bench's floor
            "farm_cpu_s": statistics.median(s.farm_cpu for s in ss),
            "links_per_s": p.links / wall,
            # where the wall time went (medians): start → first request, requests, last answer
            # → exit (the farm's clock), when the farm saw requests in every run
            "phases_s": _median_phases(ss),
            "bound_s": bound,
            "wall_over_bound": wall / bound,
            "limits": lim,
            "rcs": [s.rc for s in ss],
            "samples": [asdict(s) for s in ss],
        }
    t = res["tools"]
    if "crawler" in t and "lychee" in t:
        res["ratio"] = _ratio(t["crawler"], t["lychee"])
    # the reference: the crawler's own costs (crawler/floor) and Python's (floor/lychee)
    floor: dict[str, dict[str, float]] = {}
    if "crawler" in t and "floor" in t:
        floor["crawler/floor"] = _ratio(t["crawler"], t["floor"])
    if "floor" in t and "lychee" in t:
        floor["floor/lychee"] = _ratio(t["floor"], t["lychee"])
    if floor:
        res["ratio_floor"] = floor
    return res


def _ratio(num: dict[str, Any], den: dict[str, Any]) -> dict[str, float]:
    """num's medians over den's: wall, CPU, memory."""
    return {k: num[k] / den[k] for k in ("wall_s", "cpu_s", "mem_mb")}


# ------------------------------------------------------------------------------------ output


def report(results: list[dict], a: argparse.Namespace) -> list[str]:
    lines = [
        "",
        "== results (medians; mem and maxrss: median, max in brackets)",
        "   mem = peak PSS of the process tree (the run and all its descendants, summed, sampled"
        f" every {a.mem_interval_ms:g} ms);",
        "   procs = processes in the tree at that peak; maxrss = ru_maxrss, the largest single"
        " process",
    ]
    lines.append(
        f"{'profile':<12} {'tool':<8} {'links':>7} {'hosts':>5} {'wall s':>8} {'links/s':>8} "
        f"{'cpu s':>7} {'mem MB':>13} {'procs':>5} {'maxrss MB':>15} {'bound s':>8} {'/bound':>7}"
    )
    for r in results:
        for tool, t in r["tools"].items():
            src = "" if t["mem_source"] == ["pss"] else f"  [mem from {'/'.join(t['mem_source'])}]"
            lines.append(
                f"{r['profile']:<12} {tool:<8} {r['links']:>7} {r['hosts']:>5} "
                f"{t['wall_s']:>8.2f} {t['links_per_s']:>8.0f} {t['cpu_s']:>7.2f} "
                f"{t['mem_mb']:>6.1f} ({t['mem_mb_max']:>5.1f}) {t['procs_max']:>5} "
                f"{t['maxrss_mb']:>8.1f} ({t['maxrss_mb_max']:>5.1f}) {t['bound_s']:>8.2f} "
                f"{t['wall_over_bound']:>7.2f}{src}"
            )
        pairs = {"crawler/lychee": r["ratio"]} if "ratio" in r else {}
        pairs.update(r.get("ratio_floor", {}))
        for name, q in pairs.items():
            lines.append(
                f"{r['profile']:<12} {name + ':':<15} wall {q['wall_s']:.2f}  cpu {q['cpu_s']:.2f}"
                f"  mem {q['mem_mb']:.2f}"
            )
    lines.append("")
    lines.append("== targets")
    for r in results:
        t = r["tools"].get("crawler")
        if t is None:
            continue
        marks = []
        if r["profile"] == "unthrottled" and "ratio" in r:
            q = r["ratio"]["wall_s"]
            marks.append(f"wall crawler/lychee {q:.2f} (target <= 1.00) {_ok(q <= 1.0)}")
        if "floor/lychee" in r.get("ratio_floor", {}):
            q = r["ratio_floor"]["floor/lychee"]["wall_s"]
            marks.append(
                f"wall floor/lychee {q:.2f} (reference: plain aiohttp + selectolax title, "
                "no retries/history/reports)"
            )
        if r["profile"] == "default":
            q = t["wall_over_bound"]
            marks.append(f"wall / per-host bound {q:.2f} (target <= 1.10) {_ok(q <= 1.10)}")
            ph = t.get("phases_s")
            if ph:
                marks.append(
                    f"requests phase / per-host bound {ph[1] / t['bound_s']:.2f} (reference: "
                    f"the rest is {ph[0]:.2f} s before the first request and {ph[2]:.2f} s "
                    "after the last answer, medians)"
                )
        cap = 100.0 if r["links"] <= 10_000 else 150.0
        # the memory target is the whole tree's (fetch workers included): its peak PSS
        marks.append(
            f"peak mem (tree {'/'.join(t['mem_source']).replace('pss', 'PSS')}, "
            f"{_n(t['procs_max'], 'proc')}) {t['mem_mb_max']:.1f} MB at "
            f"{r['links']:,} links (target <= {cap:.0f}) {_ok(t['mem_mb_max'] <= cap)}"
        )
        for m in marks:
            lines.append(f"{r['profile']:<12} {m}")
    return lines


def _median_phases(ss: list[Sample]) -> list[float] | None:
    """The median of each phase (start, requests, after) over the runs, if every run has them."""
    phases = [s.server.get("phases") for s in ss]
    if not phases or not all(isinstance(ph, (tuple, list)) for ph in phases):
        return None
    return [statistics.median(ph[i] for ph in phases) for i in range(3)]  # type: ignore[index]


def _ok(flag: bool) -> str:
    return "PASS" if flag else "MISS"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--links", type=int, default=10_000)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=64, help="unthrottled: requests in flight")
    ap.add_argument("--reps", type=int, default=3, help="runs of each tool per profile")
    ap.add_argument("--default-reps", type=int, default=None, help="reps of the default profile")
    ap.add_argument(
        "--profiles", default="unthrottled,default", help="comma list: unthrottled,default,scale"
    )
    ap.add_argument("--scale-links", type=int, default=100_000)
    ap.add_argument("--scale-hosts", type=int, default=500)
    ap.add_argument("--page-kb", type=float, default=0.0, help="pad pages to about this size")
    ap.add_argument("--port", type=int, default=18480)
    ap.add_argument("--out", type=Path, default=Path("/tmp/crawler-bench"))
    ap.add_argument("--lychee", default=None, help="lychee binary (default: next to python)")
    ap.add_argument("--no-lychee", action="store_true")
    ap.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="unthrottled: also run bench/floor.py, plain aiohttp + selectolax title (reference)",
    )
    ap.add_argument("--crawler-args", default="", help="extra arguments for crawler check")
    ap.add_argument("--keep-reports", action="store_true", help="keep report.json/md of each run")
    ap.add_argument(
        "--mem-interval-ms",
        type=float,
        default=TreeMemory.INTERVAL * 1000,
        help="sample the run's process tree (PSS) this often; 0: only ru_maxrss",
    )
    ap.add_argument("--run-limit", type=float, default=600.0, help="kill a run after this long")
    ap.add_argument("--farm-max-seconds", type=float, default=3600.0)
    a = ap.parse_args(argv)

    lychee = None
    if not a.no_lychee:
        lychee = a.lychee or (str(BIN / "lychee") if (BIN / "lychee").exists() else None)
        lychee = lychee or shutil.which("lychee")
        if lychee is None:
            print("bench: lychee not installed (pip install -e '.[bench]'): crawler only")
    versions = [
        subprocess.run(
            [str(BIN / "crawler"), "--version"], capture_output=True, text=True
        ).stdout.strip()
    ]
    if lychee:
        versions.append(
            subprocess.run([lychee, "--version"], capture_output=True, text=True).stdout.strip()
        )
    if a.floor:
        v = importlib.metadata.version
        versions.append(f"floor: aiohttp {v('aiohttp')}, selectolax {v('selectolax')}")
    print(f"bench: {', '.join(versions)}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    subprocess.run([str(BIN / "crawler"), "check", "--help"], capture_output=True)  # warm .pyc

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the children

    c = a.concurrency
    free = {"max_concurrency": c, "host_concurrency": c, "host_interval": 0.0}
    profiles = []
    for name in [x.strip() for x in a.profiles.split(",") if x.strip()]:
        if name == "unthrottled":
            floor = free if a.floor else None
            profiles.append(Profile(name, a.links, a.hosts, free, free, True, a.reps, floor))
        elif name == "default":
            reps = a.default_reps or a.reps
            profiles.append(Profile(name, a.links, a.hosts, None, None, True, reps))
        elif name == "scale":
            profiles.append(Profile(name, a.scale_links, a.scale_hosts, free, free, False, 1))
        else:
            ap.error(f"unknown profile {name!r}")
    a.out.mkdir(parents=True, exist_ok=True)
    results = [run_profile(p, a, lychee, a.out) for p in profiles]
    lines = report(results, a)
    print("\n".join(lines))
    (a.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nbench: details in {a.out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
