"""What `crawler runs` and `crawler history` print, as text or JSON lines. The JSON uses
report.json's forms: ISO 8601 times to the second with their offset, true/false booleans."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from crawler.terminal import safe
from crawler.types import ALIVE

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
_BOOLEANS = frozenset({"network_down", "cached"})
_ALIVE_VALUES = frozenset(v.value for v in ALIVE)
_TIMES = frozenset({"checked_at"})


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


def history_record(row: Any) -> dict[str, Any]:
    """One stored check of a URL (a store row) as a JSON object."""
    out: dict[str, Any] = {}
    for key in HISTORY_KEYS:
        value = row[key]
        if key in _BOOLEANS:
            value = bool(value)
        elif key in _TIMES:
            value = iso(value)
        elif key == "title" and row["verdict"] not in _ALIVE_VALUES:
            value = None  # a 404 page's title is not the page's
        out[key] = value
    return out


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
