"""The Internet Archive for `crawler enrich --archive`: the Wayback snapshot of each dead URL.

Each lookup is one request to the availability API (`{endpoint}?url=…&timestamp=YYYYMMDD`) made
by the fetcher (`crawler.fetch.Fetcher`), so it gets the same politeness, retries, proxy and
`--no-private` as every other request. An answer without a usable snapshot is "no snapshot";
an archive that could not be asked (no answer, or an HTTP error) is recorded as a failure, so
the caller can say so instead of writing marks without their snapshots.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from crawler.config import DEFAULT_ARCHIVE_ENDPOINT, FetchSettings
from crawler.errors import InputError
from crawler.post import detect_encoding
from crawler.types import FetchResult

__all__ = [
    "SNAPSHOT_URL",
    "Snapshots",
    "archive_cutoff",
    "find_snapshots",
    "lookup_url",
    "read_answer",
    "safe_snapshot_url",
]

MAX_ANSWER = 64 * 1024  # bytes: an availability answer is a few hundred
SNAPSHOT_URL = re.compile(r"https?://[^\s()<>\[\]]+")
_FRONT_DATE = re.compile(r"^date:\s*['\"]?(\d{4})-(\d{1,2})-(\d{1,2})", re.MULTILINE)
_FILE_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-")


@dataclass(slots=True)
class Snapshots:
    """What the archive answered for each URL asked about."""

    found: dict[str, str] = field(default_factory=dict)  # URL -> snapshot URL
    failed: dict[str, str] = field(default_factory=dict)  # URL -> why the archive did not answer
    asked: int = 0


def safe_snapshot_url(url: str | None) -> str | None:
    """A snapshot link safe inside `[存档](…)`: http(s), percent-encoded, else None."""
    if not url:
        return None
    url = url.strip()
    if not re.match(r"https?://[^\s/?#]", url, re.IGNORECASE):
        return None
    if url.lower().startswith("http://web.archive.org/"):
        url = "https://" + url[len("http://") :]
    url = quote(url, safe=":/?#@!$&'*+,;=%~-._")
    return url if SNAPSHOT_URL.fullmatch(url) else None


def lookup_url(url: str, before: date, endpoint: str = DEFAULT_ARCHIVE_ENDPOINT) -> str:
    """The availability API request for `url`'s snapshot closest to `before`."""
    try:
        return str(httpx.URL(endpoint, params={"url": url, "timestamp": _stamp(before)}))
    except (httpx.InvalidURL, TypeError, ValueError):
        return endpoint  # the fetcher reports it as an invalid URL


def _stamp(before: date) -> str:
    return before.strftime("%Y%m%d")


def read_answer(result: FetchResult, before: date) -> tuple[str | None, str | None]:
    """(snapshot URL or None, why the archive did not answer or None) for one lookup."""
    if result.status is None:
        return None, result.error_detail or (result.error.value if result.error else "no answer")
    if result.status != 200:
        return None, f"HTTP {result.status}"
    body = result.body or b""
    if result.truncated or len(body) > MAX_ANSWER:
        return None, None  # an answer, but not an availability answer
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    return _closest_before(data, _stamp(before)), None


def _closest_before(data: object, stamp: str) -> str | None:
    """The snapshot URL in an availability answer if it is available and not after `stamp`."""
    if not isinstance(data, dict):
        return None
    snapshots = data.get("archived_snapshots")
    closest = snapshots.get("closest") if isinstance(snapshots, dict) else None
    if not isinstance(closest, dict) or closest.get("available") is not True:
        return None
    status = closest.get("status")
    if status is not None and not str(status).startswith("2"):
        return None
    ts = closest.get("timestamp")
    if not isinstance(ts, str) or len(ts) < 8 or not ts.isascii() or not ts.isdigit():
        return None
    if ts[:8] > stamp:
        return None
    snap = closest.get("url")
    return safe_snapshot_url(snap) if isinstance(snap, str) else None


async def find_snapshots(
    urls: Iterable[str],
    before: date,
    settings: FetchSettings,
    endpoint: str = DEFAULT_ARCHIVE_ENDPOINT,
) -> Snapshots:
    """Ask the archive about every URL, through the fetcher; never raises for an answer."""
    from crawler.fetch import Fetcher

    asked = {lookup_url(url, before, endpoint): url for url in dict.fromkeys(urls)}
    out = Snapshots(asked=len(asked))
    if not asked:
        return out
    async with Fetcher(settings) as fetcher:
        async for result in fetcher.fetch_all(asked):
            url = asked[result.url]
            snap, failure = read_answer(result, before)
            if failure is not None:
                out.failed[url] = failure
            elif snap is not None:
                out.found[url] = snap
    return out


def archive_cutoff(raw: bytes, path: Path | None, given: date | None, today: date) -> date:
    """The date snapshots must precede: `given`, else the post's date, else its file time."""
    if given is not None:
        return given
    try:
        head = raw.decode(detect_encoding(raw), errors="replace").lstrip("\ufeff")
    except InputError:
        head = ""
    if head.startswith("---"):
        end = head.find("\n---", 3)
        m = _FRONT_DATE.search(head[: end if end != -1 else len(head)])
        if m is not None:
            try:
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                pass
    if path is not None:
        m = _FILE_DATE.match(path.name)
        if m is not None:
            try:
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                pass
        try:
            return datetime.fromtimestamp(path.stat().st_mtime).date()
        except OSError:
            pass
    return today
