"""K-fold figures for the extractor on the shared extraction corpus: tuned on some folds,
scored on the others.

    python bench/kfold.py [--manifest ../shared/corpus/extraction/manifest.json] [--folds 5]

The extractor's rules are written by hand; what is tuned here are its few numeric settings
(the shortest paragraph that stands for a page, in Latin and in CJK text; the shortest
sentence inside an explicit content container; whether a short last title segment is cut
as the site's name). For each fold, every combination of the settings is scored on the
other folds, the best (mean of title_f1 and summary_hit) is kept and scored on the fold
itself. Printed: each fold's held-out figures and chosen settings, their mean, and the
whole corpus with the settings the code ships with. Pages are split into folds by the
SHA-256 of their name, so the split is the same on every run. Scoring is the shared
scorer's own (../shared/eval/extraction_eval.py, imported).

The rules themselves were written looking at the whole corpus, so the held-out figures
measure the tuning, not rules written blind; pages the extractor never saw are what the
issue's held-out set measures.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.extract import summary, text, title  # noqa: E402
from crawler.extract.meta import extract_meta  # noqa: E402

#: The settings tuned, each with the values tried; the first value of each is not special.
GRID: dict[tuple[ModuleType, str], tuple[Any, ...]] = {
    (text, "MIN_LATIN"): (25, 40, 60),
    (text, "MIN_CJK"): (10, 15, 25),
    (summary, "MIN_SHORT"): (15, 25, 40),
    (title, "CUT_WEAK_SUFFIX"): (True, False),
}


def load_scorer(path: Path) -> ModuleType:
    """The shared scorer, imported as a module."""
    spec = importlib.util.spec_from_file_location("extraction_eval", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fold_of(name: str, k: int) -> int:
    """The fold of a page, from its name's hash."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % k


def score_pages(scorer: ModuleType, pages: list[tuple[dict[str, Any], bytes]]) -> dict[str, float]:
    """Mean title_f1 and summary_hit over pages (unscored pages left out, as the scorer does)."""
    rows = []
    for entry, body in pages:
        meta = extract_meta(body, with_hash=False)
        rows.append(scorer.score(entry, meta.title or "", meta.summary or ""))
    out = {}
    for metric in ("title_f1", "summary_hit"):
        values = [r[metric] for r in rows if metric in r]
        out[metric] = sum(values) / len(values) if values else float("nan")
    return out


def apply(setting: dict[tuple[ModuleType, str], Any]) -> None:
    """Set the extractor's settings."""
    for (module, name), value in setting.items():
        setattr(module, name, value)


def main() -> int:
    """Run the folds and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--manifest", type=Path, default=ROOT.parent / "shared/corpus/extraction/manifest.json"
    )
    ap.add_argument("--scorer", type=Path, default=ROOT.parent / "shared/eval/extraction_eval.py")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    if not args.manifest.is_file() or not args.scorer.is_file():
        print(f"kfold: {args.manifest} or {args.scorer} not found; skipped")
        return 0
    scorer = load_scorer(args.scorer)
    entries = json.loads(args.manifest.read_text(encoding="utf-8"))
    base = args.manifest.parent
    pages = [(e, (base / e["file"]).read_bytes()) for e in entries]
    shipped = {key: getattr(key[0], key[1]) for key in GRID}
    combos = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]

    k = args.folds
    folds = [[p for p in pages if fold_of(p[0]["name"], k) == i] for i in range(k)]
    # Each setting scored once per fold; a fold's training score is the others' mean by page.
    per_fold: list[list[dict[str, float]]] = []
    for combo in combos:
        apply(combo)
        per_fold.append([score_pages(scorer, f) for f in folds])
    apply(shipped)

    held: list[dict[str, float]] = []
    for i, fold in enumerate(folds):

        def train_score(c: int, i: int = i) -> float:
            total = 0.0
            weight = 0
            for j, f in enumerate(folds):
                if j != i:
                    s = per_fold[c][j]
                    total += (s["title_f1"] + s["summary_hit"]) / 2 * len(f)
                    weight += len(f)
            return total / weight

        scores = [train_score(c) for c in range(len(combos))]
        top = max(scores)
        tied = [c for c in range(len(combos)) if scores[c] == top]
        # Among equals, the shipped settings (so a tie shows what the code does).
        best = next((c for c in tied if combos[c] == shipped), tied[0])
        got = per_fold[best][i]
        held.append(got)
        chosen = ", ".join(f"{name}={value}" for (_, name), value in combos[best].items())
        if len(tied) > 1:
            chosen += f"; {len(tied)} of {len(combos)} settings tied on the training folds"
        print(
            f"fold {i + 1}/{k}: {len(fold)} pages held out, tuned on {len(pages) - len(fold)}: "
            f"title_f1={got['title_f1']:.3f} summary_hit={got['summary_hit']:.3f} ({chosen})"
        )
    mean_t = sum(h["title_f1"] for h in held) / len(held)
    mean_s = sum(h["summary_hit"] for h in held) / len(held)
    whole = score_pages(scorer, pages)
    print(f"held-out mean over {args.folds} folds: title_f1={mean_t:.3f} summary_hit={mean_s:.3f}")
    print(
        f"whole corpus ({len(pages)} pages, shipped settings): "
        f"title_f1={whole['title_f1']:.3f} summary_hit={whole['summary_hit']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
