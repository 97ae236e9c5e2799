"""Extract stage: HTML bytes → PageMeta (title, summary, site, kind of page).

One module per job, each a chain of sources tried in order until one gives a value:
decode (bytes → text, shared with the post reader), page (the DOM and JSON-LD, parsed once),
title, summary, kind; meta runs them. The names below load the parser on first use, so
that importing `crawler.extract.decode` (the post reader does) stays cheap.
"""

from __future__ import annotations

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


def __getattr__(name: str) -> object:
    """The public names, imported from their module when first asked for."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'crawler.extract' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
