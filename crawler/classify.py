"""Classify stage: (FetchResult, PageMeta, listed title) → Classification. Pure and table-driven.

Order: a host's long pause (429) → fetch errors → definitive death → anti-robot → other statuses
→ redirects → title → ok.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

from crawler.sites import (
    ANTI_ROBOT_PATHS,
    SITES,
    STATUS_QUIRKS,
    TITLE_SUFFIX,
    anti_robot_path,
    blocked_status,
)
from crawler.types import (
    REDIRECT_STATUSES,
    Classification,
    ErrorKind,
    FetchResult,
    PageKind,
    PageMeta,
    Verdict,
)

#: Statuses that mean "gone" by the site's own word (RFC 9110 §15.5.5, §15.5.11).
DEAD_STATUSES = frozenset({404, 410})

#: Statuses with which sites refuse robots: we cannot tell whether the page lives. Besides the
#: standard ones, the sites' own (sites.STATUS_QUIRKS: CSDN's 521, LinkedIn's 999).
BLOCKED_STATUSES = frozenset({401, 403, 407, 429, 451, *STATUS_QUIRKS})

#: Statuses with which one site refuses robots (SiteRule.blocked_statuses): only these are
#: looked up by host (sites.blocked_status), not every answer's.
_SITES_BLOCKED = frozenset(s for rule in SITES for s in rule.blocked_statuses)

#: Permanent redirects (RFC 9110 §15.4.2, RFC 9110 §15.4.9).
PERMANENT = frozenset({301, 308})

#: Title suffixes that sites append; stripped before comparing with the listed title.
_SUFFIX_RE = re.compile(TITLE_SUFFIX)
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "「": '"', "」": '"'})
_ELLIPSIS = ("...", "…", "……")


def normalize_title(title: str) -> str:
    """Fold width, case, quotes, whitespace and punctuation so that equal titles compare equal."""
    s = unicodedata.normalize("NFKC", title).translate(_QUOTES).casefold()
    # casefold can leave text that NFKC would compose (R + cedilla): normalise once more.
    s = unicodedata.normalize("NFKC", s)
    return unicodedata.normalize("NFKC", s.translate(_DROP))


def _ignorable(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "PZC" or (cat[0] == "S" and cat != "Sm") or ch.isspace()


class _Drop(dict[int, int | None]):
    """str.translate table deleting the _ignorable characters, filled as characters are met."""

    def __missing__(self, code: int) -> int | None:
        value = None if _ignorable(chr(code)) else code
        if len(self) < 65536:  # titles come from the web: bound what they can make us keep
            self[code] = value
        return value


_DROP = _Drop()


def strip_site_suffix(title: str) -> str:
    """Remove known site suffixes (` - 知乎`, `_xxx的博客-CSDN博客`, ` - 博客园`, `_百度文库`)."""
    prev = None
    while prev != title:
        prev = title
        title = _SUFFIX_RE.sub("", title)
    return title


def titles_match(listed: str, fetched: str) -> bool:
    """True when the fetched title is the listed one up to width, punctuation and site suffixes."""
    if listed == fetched:  # the usual case
        return True
    want = normalize_title(listed)
    if not want:
        return True
    candidates = {normalize_title(fetched)}
    stripped = strip_site_suffix(fetched)
    if stripped != fetched:
        candidates.add(normalize_title(stripped))
    if want in candidates:
        return True
    if listed.rstrip().endswith(_ELLIPSIS):  # the author shortened a long title
        return any(c.startswith(want) for c in candidates if want)
    return False


_BLOCKED_HINT = re.compile("|".join(re.escape(p) for p in ANTI_ROBOT_PATHS))


def on_verification_path(url: str) -> bool:
    """True when the URL is one of its site's verification pages (sites.anti_robot_path)."""
    if _BLOCKED_HINT.search(url) is None:  # the usual case, without parsing the URL
        return False
    try:
        parts = urlsplit(url)
        return anti_robot_path(parts.hostname, parts.path)
    except ValueError:
        return False


def verification_redirect(fetch: FetchResult) -> bool:
    """A redirect to its site's verification page, which the fetcher does not follow: the page
    is known by its path (Fetcher._follow)."""
    return (
        fetch.error is None
        and fetch.body is None
        and fetch.status in REDIRECT_STATUSES
        and bool(fetch.hops)
        and on_verification_path(fetch.final_url)
    )


def _host(url: str) -> str | None:
    """The host of url, or None."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _same_place(a: str, b: str) -> bool:
    """http→https, default ports, a trailing slash and host case don't make a different URL."""

    def key(u: str) -> tuple[str, str, str]:
        p = urlsplit(u)
        host = (p.hostname or "").lower()
        return host, p.path.rstrip("/") or "/", p.query

    try:
        return key(a) == key(b)
    except ValueError:
        return a == b


#: URLs not requested because their host asked for a pause, by the status that asked.
_PAUSED = {ErrorKind.RATE_LIMITED: 429, ErrorKind.UNAVAILABLE: 503}


def classify(
    fetch: FetchResult,
    meta: PageMeta | None,
    listed_title: str | None,
    accept: frozenset[int] = frozenset(),
) -> Classification:
    """Give one fetched URL its verdict, a machine-readable reason and a detail for people.

    `accept` holds statuses the user declared alive for this host (config `accept`).
    """
    if fetch.retry_at is not None or fetch.error in _PAUSED:
        # A 429 or 503 asking for longer than we wait, and the host's URLs left alone because
        # of it: the reason is the status that asked.
        asked = fetch.status or _PAUSED.get(fetch.error or ErrorKind.RATE_LIMITED, 429)
        detail = fetch.error_detail or f"the host asked for a long pause ({asked})"
        return Classification(Verdict.BLOCKED, f"http-{asked}", detail)
    if fetch.error is ErrorKind.PRIVATE_ADDRESS:
        return _private(fetch)
    if fetch.error is not None:
        return _classify_error(fetch)
    status = fetch.status
    if status is None:
        return Classification(Verdict.ERROR, "no-response", "no HTTP response arrived")
    if status in accept and not 200 <= status < 300:
        return Classification(
            Verdict.OK, "accepted-status", f"HTTP {status}, accepted as alive by the configuration"
        )
    kind = meta.kind if meta is not None else PageKind.OTHER
    notice = meta.notice if meta is not None and meta.notice else None

    if status in DEAD_STATUSES:
        return Classification(Verdict.DEAD, f"http-{status}", f"the server answered {status}")
    if kind is PageKind.ANTI_ROBOT or on_verification_path(fetch.final_url):
        detail = f"anti-robot page{': ' + notice if notice else ''} (HTTP {status})"
        return Classification(Verdict.BLOCKED, "anti-robot", detail)
    if status in BLOCKED_STATUSES or (
        status in _SITES_BLOCKED and blocked_status(_host(fetch.final_url), status)
    ):
        detail = f"the site refused the robot with HTTP {status}"
        if status == 429:
            detail = "still rate-limited (429) after the retries"
        return Classification(Verdict.BLOCKED, f"http-{status}", detail)
    if status >= 500:
        return Classification(
            Verdict.ERROR,
            f"http-{status}",
            f"server error {status}"
            + (f" after {fetch.attempts} attempts" if fetch.attempts > 1 else ""),
        )
    if 300 <= status < 400:
        return Classification(Verdict.ERROR, f"http-{status}", "redirect without a Location")
    if status >= 400:
        return Classification(Verdict.ERROR, f"http-{status}", f"the server answered {status}")
    if status < 200:
        return Classification(Verdict.ERROR, f"http-{status}", f"unexpected status {status}")

    # 2xx from here on.
    if kind is PageKind.REMOVED:
        return Classification(
            Verdict.DEAD, "removed-notice", f"the site says: {notice or 'this content was removed'}"
        )
    if kind is PageKind.NOT_FOUND:
        return Classification(
            Verdict.DEAD, "soft-404", "the page is a 'not found' page served with 200"
        )

    if (
        fetch.hops
        and fetch.hops[0].status in PERMANENT
        and not _same_place(fetch.url, fetch.final_url)
    ):
        return Classification(
            Verdict.REDIRECTED, "moved-permanently", f"moved permanently to {fetch.final_url}"
        )

    title = meta.title if meta is not None else None
    if listed_title and title and not titles_match(listed_title, title):
        return Classification(
            Verdict.CHANGED,
            "title-changed",
            f"listed “{listed_title}”, the page now says “{title}”",
        )
    if listed_title and title:
        return _alive(status, "title-matches")
    if not title:
        return _alive(status, "alive-no-title")
    return _alive(status, "alive")


_ALIVE_DETAIL = {
    "title-matches": "alive (HTTP {}), title matches",
    "alive-no-title": "alive (HTTP {}), no title found",
    "alive": "alive (HTTP {})",
}


@lru_cache(maxsize=256)
def _alive(status: int, reason: str) -> Classification:
    """The ok classification, one shared value per status and reason (most links get one)."""
    return Classification(Verdict.OK, reason, _ALIVE_DETAIL[reason].format(status))


_ERROR_WORDS = {
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.DNS: "the host name does not resolve",
    ErrorKind.CONNECT: "could not connect (refused or reset)",
    ErrorKind.TLS: "TLS/certificate failure",
    ErrorKind.PROXY: "the proxy failed",
    ErrorKind.TOO_MANY_REDIRECTS: "too many redirects",
    ErrorKind.REDIRECT_LOOP: "redirect loop",
    ErrorKind.BAD_REDIRECT: "redirect to an invalid or non-http URL",
    ErrorKind.PROTOCOL: "the connection broke (dropped, reset or invalid HTTP)",
    ErrorKind.TOO_LARGE: "the response is too large",
    ErrorKind.INVALID_URL: "the URL is not a valid http(s) URL",
    ErrorKind.RATE_LIMITED: "not requested: the host asked for a pause (429)",
    ErrorKind.UNAVAILABLE: "not requested: the host asked for a pause (503)",
    ErrorKind.NETWORK_DOWN: "the network looks down",
}


def _private(fetch: FetchResult) -> Classification:
    """--no-private refused an address: the link's own host is excluded (skipped, as one whose
    URL names a private address is before the run); a redirect into the private network is not
    followed (blocked: liveness unknown). Neither counts toward death."""
    why = fetch.error_detail or "a private or local address"
    if not fetch.hops:
        return Classification(
            Verdict.SKIPPED, "private-address", f"excluded by --no-private: {why}"
        )
    return Classification(
        Verdict.BLOCKED,
        "private-address",
        f"refused to follow a redirect into a private address (--no-private): {why}",
    )


def _classify_error(fetch: FetchResult) -> Classification:
    kind = fetch.error
    assert kind is not None
    words = _ERROR_WORDS.get(kind, kind.value)
    tries = f" after {fetch.attempts} attempts" if fetch.attempts > 1 else ""
    detail = f"{words}{tries}"
    if fetch.error_detail:
        detail += f" ({fetch.error_detail})"
    return Classification(Verdict.ERROR, kind.value, detail)
