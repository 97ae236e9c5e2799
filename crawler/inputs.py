"""The inputs of a run: files, directories, globs or standard input → their links, filtered."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from crawler.errors import CrawlerError
from crawler.types import Link


@dataclass(frozen=True, slots=True)
class Inputs:
    """The links of every input, in order, and what the run records about the inputs."""

    links: list[Link]
    digests: dict[str, str]  # real path (or "-") → sha256 of the bytes read
    sources: list[str]
    ignored: int  # links skipped by an inline crawler-ignore comment


def load_links(inputs: Sequence[str], every: bool = False) -> Inputs:
    """Read every input (files, directories, globs, - for standard input)."""
    from crawler.post import (
        DEAD_MARK,
        drop_ignored,
        expand_inputs,
        parse_post,
        read_post,
        read_stdin,
    )

    links: list[Link] = []
    digests: dict[str, str] = {}
    ignored = 0
    sources = expand_inputs(inputs)
    for src in sources:
        if src == "-":
            data = sys.stdin.buffer.read()
            text, found = read_stdin(data, every)
        else:
            text, found = read_post(src, every)
            data = Path(src).read_bytes()
        # Dead marks written by `crawler enrich` are not part of what the author listed.
        if DEAD_MARK in text:  # crawler.enrich only for a post that has marks
            from crawler.enrich import strip_marks

            unmarked = strip_marks(text)
            if unmarked != text:
                found = parse_post(unmarked, src, every)
        found, dropped = drop_ignored(text, found)
        ignored += dropped  # counted with the excluded links (`crawler check`'s summary)
        links.extend(found)
        # keyed by real path: enrich finds the check whatever path or folder it is given
        digests[src if src == "-" else os.path.realpath(src)] = sha256(data).hexdigest()
    return Inputs(links, digests, sources, ignored)


def filter_links(
    links: list[Link], include: Sequence[re.Pattern[str]], exclude: Sequence[re.Pattern[str]]
) -> tuple[list[Link], int]:
    """The links that match an include pattern (if any) and no exclude pattern, and how many
    were dropped."""
    kept = [
        link
        for link in links
        if (not include or any(r.search(link.url) for r in include))
        and not any(r.search(link.url) for r in exclude)
    ]
    return kept, len(links) - len(kept)


def exclude_private(links: list[Link]) -> tuple[list[Link], int]:
    """--no-private: drop the links whose own host is a private address or localhost, as
    lychee's --exclude-private does; return kept and dropped."""
    from crawler.fetch import private_url

    kept = [link for link in links if private_url(link.url) is None]
    return kept, len(links) - len(kept)


def nothing_to_check(sources: Sequence[str], excluded: int) -> CrawlerError:
    """The error of a run that would check no link: a failure, not "all links are alive"."""
    where = ", ".join("standard input" if s == "-" else s for s in sources) or "the input"
    if excluded:
        return CrawlerError(
            f"nothing to check: all {excluded} links of {where} are excluded "
            "(--include, --exclude, .crawlerignore, --no-private, --offline)"
        )
    return CrawlerError(f"nothing to check: no links found in {where}")
