"""In-process cost of extract_meta on the pages of an eval manifest, next to the parse alone.

    python bench/extract_profile.py MANIFEST [--reps 5] [--profile N]

Prints, for every page and for the pages over 500 KB: the CPU time of extract_meta (as
`crawler extract` calls it, without the content hash), best of --reps, and the CPU time of
selectolax's parse alone of the same bytes, which no change to our code can go under. No
process start-up is counted (bench/extract_speed.py gives the whole command). CPU time, not
the wall clock: other work on a shared machine changes it much less. --profile N prints the
N functions with the most own time under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections.abc import Callable
from pathlib import Path

from selectolax.lexbor import LexborDocumentOptions, LexborHTMLParser

from crawler.extract.meta import extract_meta


def best_cpu(run: Callable[[], object], reps: int) -> float:
    """The least CPU time (s) of `reps` calls of run."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best


def main() -> int:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    args = ap.parse_args()
    base = args.manifest.resolve().parent
    entries = json.loads(args.manifest.read_text(encoding="utf-8"))
    bodies = [(base / (e.get("file") or e["name"] + ".html")).read_bytes() for e in entries]
    for name, pages in (("all", bodies), ("over 500 KB", [b for b in bodies if len(b) > 500_000])):
        if not pages:
            continue
        for body in pages:  # warm: imports, regex caches
            extract_meta(body, with_hash=False)
        meta = best_cpu(lambda p=pages: [extract_meta(b, with_hash=False) for b in p], args.reps)
        parse = best_cpu(
            lambda p=pages: [
                LexborHTMLParser(b, options=LexborDocumentOptions.WO_EVENTS) for b in p
            ],
            args.reps,
        )
        print(
            f"{name}: {len(pages)} pages ({sum(map(len, pages)) / 1e6:.1f} MB): extract_meta "
            f"{meta * 1000:.0f} ms CPU ({len(pages) / meta:.0f} pages/s), the parse alone "
            f"{parse * 1000:.0f} ms ({len(pages) / parse:.0f} pages/s), best of {args.reps}"
        )
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for body in bodies:
            extract_meta(body, with_hash=False)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
