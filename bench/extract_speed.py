"""Pages per second of `crawler extract -j N` on the pages of an eval manifest.

    python bench/extract_speed.py MANIFEST [--jobs 1 2] [--reps 5]

Each run is one `crawler extract -j N --` process over every page of the manifest, as
extraction_eval.py --batch runs it. Printed per N: the best wall-clock rate of the runs, and
the rate per CPU-second (user + sys of the process and its children, from os.wait4), which a
machine shared with other work changes much less than the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one run of cmd (its output discarded)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--crawler", default=str(Path(sys.executable).parent / "crawler"))
    args = ap.parse_args()
    base = args.manifest.resolve().parent
    entries = json.loads(args.manifest.read_text(encoding="utf-8"))
    files = [str(base / (e.get("file") or e["name"] + ".html")) for e in entries]
    size = sum(os.path.getsize(f) for f in files)
    for jobs in args.jobs:
        runs = [
            run_once([args.crawler, "extract", "-j", str(jobs), *files]) for _ in range(args.reps)
        ]
        wall = min(w for w, _ in runs)
        cpu = min(c for _, c in runs)
        print(
            f"-j {jobs}: {len(files)} pages ({size / 1e6:.1f} MB), best of {args.reps}: "
            f"{len(files) / wall:.0f} pages/s wall, {len(files) / cpu:.0f} pages per CPU-second "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
