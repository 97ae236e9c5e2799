"""report.json: the machine-readable contract (schema 1), one record per occurrence of a URL."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any, TextIO

from crawler.types import Check, Run, lean

SCHEMA = 1

#: The fields of a record, in order.
FIELDS = (
    "url", "source", "line", "section", "section_path", "listed_title", "verdict", "reason",
    "detail", "http_status", "final_url", "redirects", "title", "summary", "page_kind", "error",
    "checked_at", "attempts", "elapsed_ms", "cached", "previous_verdict", "previous_title",
    "since", "first_failed_at", "consecutive_failures", "newly_broken", "recovered",
    "checked_this_run",
)  # fmt: skip


def _values(check: Check) -> list[Any]:
    """The values of one check's record, in FIELDS order."""
    f, m, link, h = check.fetch, check.meta, check.link, check.history
    return [
        link.url,
        link.source,
        link.line,
        " / ".join(link.section),
        list(link.section),
        link.listed_title,
        check.verdict.value,
        check.reason,
        check.detail,
        f.status if f else None,
        f.final_url if f else link.url,
        [{"status": h.status, "url": h.url} for h in f.hops] if f else [],
        check.page_title,
        m.summary if m else None,
        m.kind.value if m else None,
        f.error.value if f and f.error else None,
        None if check.never_checked else check.checked_at.isoformat(timespec="seconds"),
        f.attempts if f else 0,
        f.elapsed_ms if f else 0,
        check.cached,
        h.previous_verdict.value if h and h.previous_verdict else None,
        h.previous_title if h else None,
        _iso(h.since) if h else None,
        _iso(h.first_failed_at) if h else None,
        h.consecutive_failures if h else 0,
        check.newly_broken,
        check.recovered,
        check.checked_this_run,
    ]


def record(check: Check) -> dict[str, Any]:
    """The JSON record of one check."""
    return dict(zip(FIELDS, _values(check), strict=True))


def _iso(d: datetime | None) -> str | None:
    return d.isoformat(timespec="seconds") if d is not None else None


def _header(run: Run) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "generated_at": run.finished_at.isoformat(timespec="seconds"),
        "started_at": run.started_at.isoformat(timespec="seconds"),
        "source": list(run.sources),  # every input, even when there is one
        "network_down": run.network_down,
        "run_id": run.run_id,
        "status": run.status,  # complete | interrupted | running: a partial run says so
        "summary": run.counts(),
    }


# The layout is json.dumps(doc, ensure_ascii=False, indent=1), written a record at a time.
# json's indenting encoder is pure Python; the compact one is C. Each record's flat values are
# encoded in one C call with "\x00" between them (json escapes a NUL inside a string, so the
# separator cannot occur in a value) and laid out here; the two lists get the indented form.
_FLAT = [i for i, k in enumerate(FIELDS) if k not in ("section_path", "redirects")]
_SECTION_PATH = FIELDS.index("section_path")
_REDIRECTS = FIELDS.index("redirects")
_FLAT_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=("\x00", ": "))
_RECORD = "  {\n" + ",\n".join(f'   "{k}": %s' for k in FIELDS) + "\n  }"


def _nested(value: list[Any]) -> str:
    """A list field in the indented layout, at a record field's depth."""
    if not value:
        return "[]"
    return json.dumps(value, ensure_ascii=False, indent=1).replace("\n", "\n   ")


class Feed:
    """The report written to out as the run's checks are fed to it, one record at a time:
    the head at once (the counts are the run's tally), the end at close()."""

    __slots__ = ("out", "n", "paths", "buf", "empty")

    def __init__(self, run: Run, out: TextIO) -> None:
        head = json.dumps(_header(run), ensure_ascii=False, indent=1)
        out.write(head[:-2] + ',\n "links": [')
        self.out = out
        self.n = 0
        self.paths: dict[tuple[str, ...], str] = {}  # the posts' sections are few: each once
        self.buf: list[str] = []
        self.empty = not run.checks

    def __call__(self, check: Check) -> None:
        values = _values(check)
        flat = _FLAT_ENCODER.encode([values[i] for i in _FLAT])[1:-1].split("\x00")
        section = check.link.section
        path = self.paths.get(section)
        if path is None:
            path = self.paths[section] = _nested(values[_SECTION_PATH])
        flat.insert(_SECTION_PATH, path)
        flat.insert(_REDIRECTS, _nested(values[_REDIRECTS]))
        self.buf.append(("\n" if self.n == 0 else ",\n") + _RECORD % tuple(flat))
        self.n += 1
        if len(self.buf) >= 256:
            self.out.write("".join(self.buf))
            self.buf.clear()

    def close(self) -> None:
        """Write the rest."""
        self.out.write("".join(self.buf))
        self.buf.clear()
        self.out.write("\n ]\n}\n" if not self.empty else "]\n}\n")


def write(run: Run, out: TextIO) -> None:
    """Write the whole report as JSON text to out, one record at a time."""
    feed = Feed(run, out)
    for check in lean(run.checks):
        feed(check)
    feed.close()


def render(run: Run) -> str:
    """The whole report as JSON text."""
    out = io.StringIO()
    write(run, out)
    return out.getvalue()
