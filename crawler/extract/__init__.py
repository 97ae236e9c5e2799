"""Extract stage: HTML bytes → PageMeta (title, summary, site, kind of page).

One module per job, each a chain of sources tried in order until one gives a value:
decode (bytes → text, shared with the post reader), page (the DOM and JSON-LD, parsed once),
title, summary, kind; meta runs them. The names below load the parser on first use, so
that importing `crawler.extract.decode` (the post reader does) stays cheap.
"""

from __future__ import annotations

from crawler.lazy import lazy_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from crawler.extract.decode import decode_html as decode_html
    from crawler.extract.meta import extract_meta as extract_meta
    from crawler.extract.text import normalize_space as normalize_space

__all__ = ["decode_html", "extract_meta", "normalize_space"]

_WHERE = {
    "decode_html": "crawler.extract.decode",
    "extract_meta": "crawler.extract.meta",
    "normalize_space": "crawler.extract.text",
}


__getattr__ = lazy_names(__name__, _WHERE)
