"""report.json: the machine-readable contract (schema 1), one record per occurrence of a URL."""

from __future__ import annotations

import json
from typing import Any

from crawler.types import Check, Run

SCHEMA = 1


def record(check: Check) -> dict[str, Any]:
    """The JSON record of one check."""
    f, m, link = check.fetch, check.meta, check.link
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
    }


def render(run: Run) -> str:
    """The whole report as JSON text."""
    doc = {
        "schema": SCHEMA,
        "generated_at": run.finished_at.isoformat(timespec="seconds"),
        "started_at": run.started_at.isoformat(timespec="seconds"),
        "source": run.sources[0] if len(run.sources) == 1 else list(run.sources),
        "network_down": run.network_down,
        "summary": run.counts(),
        "links": [record(c) for c in run.checks],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
