"""The inputs of a run: files, directories, globs or standard input → their links, filtered."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import chain
from typing import TYPE_CHECKING

from crawler.errors import CrawlerError
from crawler.types import Link

if TYPE_CHECKING:
    from crawler.local import Remap


@dataclass(frozen=True, slots=True)
class Inputs:
    """The links of every input, in order, and what the run records about the inputs."""

    links: list[Link]
    digests: dict[str, str]  # real path (or "-") → sha256 of the bytes read
    sources: list[str]
    ignored: int  # links skipped by an inline crawler-ignore comment


@dataclass(frozen=True, slots=True)
class InputStream:
    """stream_links' answer: the links of every input, read once as they come, in order; what
    the run records about the inputs is known before the first link."""

    links: Iterator[Link]
    digests: dict[str, str]  # real path (or "-") → sha256 of the bytes read
    sources: list[str]
    ignored: int  # links skipped by an inline crawler-ignore comment


def load_links(inputs: Sequence[str], every: bool = False) -> Inputs:
    """Read every input (files, directories, globs, - for standard input)."""
    found = stream_links(inputs, every)
    return Inputs(list(found.links), found.digests, found.sources, found.ignored)


def stream_links(inputs: Sequence[str], every: bool = False) -> InputStream:
    """load_links' links as an iterator: a plain UTF-8 post's are read as its lines come
    (crawler.post.survey_post), any other input's at once. Every input is opened and checked
    here, so a bad one fails before the first link is handed on."""
    from crawler.post import expand_inputs, read_post_bytes, stream_post, survey_post

    parts: list[Iterable[Link]] = []
    digests: dict[str, str] = {}
    ignored = 0
    sources = expand_inputs(inputs)
    for src in sources:
        found: Iterable[Link]
        if src == "-":
            data = sys.stdin.buffer.read()
            digest = sha256(data).hexdigest()
            found, dropped = _read_whole(src, data, every)
        else:
            survey = survey_post(src)
            if survey.digest is None:  # not a regular file (a pipe: `<(…)`, /dev/stdin): its
                # bytes are read once, for both its links and their digest
                data = read_post_bytes(src)
                digest = sha256(data).hexdigest()
                found, dropped = _read_whole(src, data, every, stdin=False)
            else:
                digest = survey.digest
                if survey.encoding is not None:
                    found, dropped = stream_post(src, survey.encoding, every), 0
                else:
                    found, dropped = _read_whole(src, None, every)
        parts.append(found)
        ignored += dropped  # counted with the excluded links (`crawler check`'s summary)
        # keyed by real path: enrich finds the check whatever path or folder it is given
        digests[src if src == "-" else os.path.realpath(src)] = digest
    return InputStream(chain.from_iterable(parts), digests, sources, ignored)


def _read_whole(
    src: str, data: bytes | None, every: bool, stdin: bool = True
) -> tuple[list[Link], int]:
    """The links of one input read whole (`data`: its bytes when read already, standard
    input's unless not `stdin`), less those an ignore comment skips, and how many it skipped."""
    from crawler.post import DEAD_MARK, drop_ignored, parse_post, read_post, read_stdin

    if data is not None and stdin:
        text, found = read_stdin(data, every)
    else:
        text, found = read_post(src, every, data)
    # Dead marks written by `crawler enrich` are not part of what the author listed.
    if DEAD_MARK in text:  # crawler.enrich only for a post that has marks
        from crawler.enrich import strip_marks

        unmarked = strip_marks(text)
        if unmarked != text:
            found = parse_post(unmarked, src, every)
    return drop_ignored(text, found)


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


@dataclass(slots=True)
class Sifted:
    """What sift_links set aside, complete once its links are read: the links excluded (with
    those an ignore comment skipped, `excluded` at the start) and the links checked here
    (local paths and other schemes), in order."""

    excluded: int = 0
    others: list[Link] = field(default_factory=list)

    def web_only(self, links: Iterable[Link], no_private: bool, offline: bool) -> Iterator[Link]:
        """--no-private (a private or local host) and --offline (every web link) as exclusions."""
        from crawler.fetch import private_url

        for link in links:
            if offline or (no_private and private_url(link.url) is not None):
                self.excluded += 1
            else:
                yield link


def sift_links(
    links: Iterable[Link],
    remap: Sequence[Remap],
    include: Sequence[re.Pattern[str]],
    exclude: Sequence[re.Pattern[str]],
    sifted: Sifted,
) -> Iterator[Link]:
    """The web links to fetch, as they come: each remapped, then filtered as filter_links does;
    the links excluded are counted and the others (local.split's) kept in `sifted`."""
    from crawler import local

    for link in links:
        if remap:
            link = local.remap((link,), remap)[0]
        if (include and not any(r.search(link.url) for r in include)) or any(
            r.search(link.url) for r in exclude
        ):
            sifted.excluded += 1
        elif local.kind_of(link.url) is not local.Kind.WEB:
            sifted.others.append(link)
        else:
            yield link


def nothing_to_check(sources: Sequence[str], excluded: int) -> CrawlerError:
    """The error of a run that would check no link: a failure, not "all links are alive"."""
    where = ", ".join("standard input" if s == "-" else s for s in sources) or "the input"
    if excluded:
        return CrawlerError(
            f"nothing to check: all {excluded} links of {where} are excluded "
            "(--include, --exclude, .crawlerignore, --no-private, --offline)"
        )
    return CrawlerError(f"nothing to check: no links found in {where}")
