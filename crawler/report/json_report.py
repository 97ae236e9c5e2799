"""report.json: the machine-readable contract (schema 1), one record per occurrence of a URL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from crawler.types import Check, Run

SCHEMA = 1


def record(check: Check) -> dict[str, Any]:
    """The JSON record of one check."""
    f, m, link, h = check.fetch, check.meta, check.link, check.history
    return {
        "url": link.url,
        "source": link.source,
        "line": link.line,
        "section": " / ".join(link.section),
        "section_path": list(link.section),
        "listed_title": link.listed_title,
        "verdict": check.verdict.value,
        "reason": check.reason,
        "detail": check.detail,
        "http_status": f.status if f else None,
        "final_url": f.final_url if f else link.url,
        "redirects": [{"status": h.status, "url": h.url} for h in f.hops] if f else [],
        "title": m.title if m else None,
        "summary": m.summary if m else None,
        "page_kind": m.kind.value if m else None,
        "error": f.error.value if f and f.error else None,
        "checked_at": check.checked_at.isoformat(timespec="seconds"),
        "attempts": f.attempts if f else 0,
        "elapsed_ms": f.elapsed_ms if f else 0,
        "cached": check.cached,
        "previous_verdict": h.previous_verdict.value if h and h.previous_verdict else None,
        "previous_title": h.previous_title if h else None,
        "since": _iso(h.since) if h else None,
        "first_failed_at": _iso(h.first_failed_at) if h else None,
        "consecutive_failures": h.consecutive_failures if h else 0,
        "newly_broken": check.newly_broken,
        "recovered": check.recovered,
    }


def _iso(d: datetime | None) -> str | None:
    return d.isoformat(timespec="seconds") if d is not None else None


def render(run: Run) -> str:
    """The whole report as JSON text."""
    doc = {
        "schema": SCHEMA,
        "generated_at": run.finished_at.isoformat(timespec="seconds"),
        "started_at": run.started_at.isoformat(timespec="seconds"),
        "source": run.sources[0] if len(run.sources) == 1 else list(run.sources),
        "network_down": run.network_down,
        "run_id": run.run_id,
        "summary": run.counts(),
        "links": [record(c) for c in run.checks],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
