"""What `crawler runs` and `crawler history` print, as text or JSON lines. The JSON uses
report.json's forms: ISO 8601 times to the second with their offset, true/false booleans."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crawler.redact import redact_url
from crawler.sanitize import terminal as safe
from crawler.types import ALIVE, Link

if TYPE_CHECKING:
    from crawler.store import CheckRecord, Store

#: history --json fields, in order.
HISTORY_KEYS = (
    "run_id",
    "checked_at",
    "verdict",
    "raw_verdict",
    "reason",
    "detail",
    "http_status",
    "final_url",
    "title",
    "run_status",
    "network_down",
    "cached",
)
_ALIVE_VALUES = frozenset(v.value for v in ALIVE)


def iso(value: datetime | str | None) -> str | None:
    """A time as report.json writes it: 2026-12-07T06:17:03+00:00."""
    if value is None or value == "":
        return None
    d = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def run_status(status: str, network_down: bool) -> str:
    """complete, interrupted, partial, running or network-down (a finished run in which no
    host answered)."""
    return "network-down" if network_down and status == "complete" else status


def run_record(info: Any, counts: Mapping[str, int]) -> dict[str, Any]:
    """One run (a store.RunInfo) as a JSON object."""
    return {
        "run_id": info.id,
        "started_at": iso(info.started_at),
        "finished_at": iso(info.finished_at),
        "status": run_status(info.status, info.network_down),
        "network_down": bool(info.network_down),
        "checked": sum(counts.values()),
        "summary": dict(counts),
        "sources": list(info.sources),
    }


def run_line(record: Mapping[str, Any]) -> str:
    """One run as a line: id, started, finished, status, counts, posts."""
    started = (record["started_at"] or "")[:19].replace("T", " ")
    finished = (record["finished_at"] or "-")[:19].replace("T", " ")
    counts = ", ".join(f"{n} {v}" for v, n in record["summary"].items() if n) or "nothing checked"
    posts = ", ".join(safe(s) for s in record["sources"])
    return (
        f"{record['run_id']:>4}  {started}  {finished:<19}  {record['status']:<12}  "
        f"{record['checked']:>5} checked: {counts}  {posts}"
    )


def history_record(check: CheckRecord) -> dict[str, Any]:
    """One stored check of a URL as a JSON object."""
    out: dict[str, Any] = {key: getattr(check, key) for key in HISTORY_KEYS}
    out["checked_at"] = iso(check.checked_at)
    if check.verdict not in _ALIVE_VALUES:
        out["title"] = None  # a 404 page's title is not the page's
    return out


def url_timeline(store: Store, url: str) -> tuple[list[CheckRecord], str | None]:
    """Every check of url, oldest first, each (run, URL) once; when url itself was never
    checked, those of the URL a check ended at or of its http/https twin, with a note saying so.
    A password in url is looked for as recorded (***)."""
    url = redact_url(url)
    checks = store.url_history(url)
    note = None
    if not checks:  # the URL the check ended at, or the same URL over http/https
        twin = other_scheme(url)
        checks = store.checks_matching([url, twin] if twin else [url])
        if checks:
            found = ", ".join(sorted({c.url for c in checks}))
            note = f"{url}: not in the history itself; showing {found}"
    seen: set[tuple[int, str]] = set()
    out = []
    for c in checks:
        if (c.run_id, c.url) not in seen:  # the same URL listed twice in one run
            seen.add((c.run_id, c.url))
            out.append(c)
    return out, note


def history_line(record: Mapping[str, Any]) -> str:
    """One check of a URL as a line."""
    flags = []
    if record["network_down"]:
        flags.append("network down")
    if record["run_status"] != "complete":
        flags.append(record["run_status"])
    if record["cached"]:
        flags.append("cached")
    extra = f" [{', '.join(flags)}]" if flags else ""
    status = record["http_status"] if record["http_status"] is not None else "-"
    return (
        f"{(record['checked_at'] or '')[:19]}  run {record['run_id']:<4} "
        f"{record['verdict']:<10} {status!s:<4} {safe(record['reason'])}{extra}  "
        f"{safe(record['title'] or '')[:80]}"
    )


def json_lines(records: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """Each record as one JSON line."""
    for r in records:
        yield json.dumps(r, ensure_ascii=False)


def other_scheme(url: str) -> str | None:
    """url with http and https swapped, or None for another scheme."""
    for a, b in (("http://", "https://"), ("https://", "http://")):
        if url[: len(a)].lower() == a:
            return b + url[len(a) :]
    return None


def link_record(link: Link) -> dict[str, Any]:
    """One reference found in a post (`crawler links`) as a JSON object."""
    from crawler.local import kind_of

    return {
        "url": link.url,
        "file": link.source,
        "line": link.line,
        "section": " / ".join(link.section),
        "listed_title": link.listed_title,
        "kind": kind_of(link.url).value,
    }
