"""A URL's password kept out of what the tool records and shows.

Credentials in a URL (`https://user:pass@host/…`) are sent as Basic auth (crawler/fetch); the
history, the reports and the terminal get the URL with its password as `***`
(`https://user:***@host/…`) and the rest of it as written, so that the checks of a URL stay
one URL's. The request is made with the URL as written, and `crawler enrich` writes the
user's own password back into the post. `***` as for a PostgreSQL URL's password (crawler/db
takes MASK from here)."""

from __future__ import annotations

import re
from typing import NamedTuple

MASK = "***"

#: scheme://user:password@ in free text (an error's detail that quotes a URL).
_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:\[\]]*:)[^\s/?#@]+@")


class _Parts(NamedTuple):
    scheme: str
    user: str
    password: str | None  # None: no `:` in the user part
    hostport: str
    tail: str  # path, query and fragment, as written


def _parts(url: str) -> _Parts | None:
    """A URL with a user part, cut where it matters here; None for any other."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch, 0, end)
        if i >= 0:
            end = i
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at:
        return None
    user, colon, password = userinfo.partition(":")
    return _Parts(scheme, user, password if colon else None, hostport, rest[end:])


def redact_url(url: str) -> str:
    """url with the password of its user part (if any) as ***; any other URL as it is."""
    if "@" not in url:  # (almost every URL: nothing parsed)
        return url
    p = _parts(url)
    if p is None or not p.password:
        return url
    return f"{p.scheme}://{p.user}:{MASK}@{p.hostport}{p.tail}"


def redact_text(text: str) -> str:
    """text with the password of every URL in it as ***."""
    return _IN_TEXT.sub(rf"\1{MASK}@", text) if "@" in text else text


def unredact(url: str, written: str) -> str | None:
    """url as recorded (a redirect's target), to be written where `written` was: with
    written's password in place of *** when both name the same user on the same host and
    port; None when url's password is *** and that is not so (it cannot be written)."""
    p = _parts(url) if "@" in url else None
    if p is None or p.password != MASK:
        return url
    w = _parts(written)
    if w is None or (w.scheme, w.user, w.hostport) != (p.scheme, p.user, p.hostport):
        return None
    return f"{p.scheme}://{w.user}:{w.password}@{p.hostport}{p.tail}"
