"""PageKind, on its own: the extract stage needs it without the rest of crawler.types, whose
dataclasses were a fifth of `crawler extract`'s start-up. crawler.types exports it too."""

from __future__ import annotations

from enum import StrEnum


class PageKind(StrEnum):
    """What a fetched or saved page is, judged from its content alone."""

    ARTICLE = "article"
    REMOVED = "removed"  # the site's own "this content cannot be shown" page
    ANTI_ROBOT = "anti-robot"  # a verification / challenge page
    NOT_FOUND = "not-found"  # a soft 404 page
    OTHER = "other"
