"""Links that are not fetched: local files, site-absolute paths, other schemes; and --remap.

Local links are checked on disk, without network: relative ones against the post's folder,
site-absolute ones (`/images/x.png`) against --root-dir, `file://` URLs as they are. Other
schemes (`mailto:`, `ftp:` …) and site-absolute links without a root are `skipped`.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from crawler import fragments
from crawler.types import Check, LazyChecks, Link, Verdict

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class Kind(StrEnum):
    """Where a link points."""

    WEB = "web"  # http(s): fetched
    LOCAL = "local"  # a path relative to the post (or `#part` of the post itself)
    SITE = "site"  # a site-absolute path: /images/x.png
    FILE = "file"  # a file:// URL
    SCHEME = "scheme"  # mailto:, ftp:, git:, tel: … and //host (protocol-relative)


def kind_of(url: str) -> Kind:
    """The kind of a link's URL."""
    m = _SCHEME.match(url)
    if m:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            return Kind.WEB
        if scheme == "file":
            return Kind.FILE
        if len(scheme) > 1:  # else a Windows drive letter: C:\\notes\\a.md
            return Kind.SCHEME
    if url.startswith("//"):
        return Kind.SCHEME
    if url.startswith("/"):
        return Kind.SITE
    return Kind.LOCAL


@dataclass(frozen=True, slots=True)
class Remap:
    """One --remap rule: URLs matching `pattern` are rewritten to `replacement`."""

    pattern: re.Pattern[str]
    replacement: str  # in re.sub's syntax (\\1, \\g<name>); lychee's $1 and ${name} are converted

    def __str__(self) -> str:
        return f"{self.pattern.pattern} {self.replacement}"

    @classmethod
    def parse(cls, spec: str) -> Remap:
        """'REGEX REPLACEMENT' → Remap; ValueError names what is wrong."""
        parts = spec.strip().split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{spec!r} is not 'REGEX REPLACEMENT'")
        try:
            pattern = re.compile(parts[0])
        except re.error as exc:
            raise ValueError(f"bad regular expression {parts[0]!r}: {exc}") from None
        replacement = re.sub(r"\$\{(\w+)\}|\$(\d+)", lambda m: f"\\g<{m[1] or m[2]}>", parts[1])
        for ref in re.findall(r"\\g<(\w+)>|\\(\d+)", replacement):
            name = ref[0] or ref[1]
            known = int(name) <= pattern.groups if name.isdigit() else name in pattern.groupindex
            if not known:
                raise ValueError(f"replacement {parts[1]!r}: the pattern has no group {name}")
        return cls(pattern, replacement)


def remap(links: Iterable[Link], rules: Sequence[Remap]) -> list[Link]:
    """links with the first matching rule applied to each URL."""
    out = []
    for link in links:
        for rule in rules:
            if rule.pattern.search(link.url):
                try:
                    url = rule.pattern.sub(rule.replacement, link.url, count=1)
                except (re.error, IndexError):
                    url = link.url
                link = replace(link, url=url)
                break
        out.append(link)
    return out


def split(links: Sequence[Link]) -> tuple[list[Link], list[Link]]:
    """(links to fetch, links checked here)."""
    web: list[Link] = []
    other: list[Link] = []
    for link in links:
        (web if kind_of(link.url) is Kind.WEB else other).append(link)
    return web, other


def _path(link: Link, kind: Kind, root: Path | None) -> Path | None:
    """The file a local link names, or None when it cannot be placed (no --root-dir)."""
    if kind is Kind.FILE:
        return Path(url2pathname(urlsplit(link.url).path))
    target = unquote(link.url.split("#", 1)[0].split("?", 1)[0])
    if kind is Kind.SITE:
        return None if root is None else root / target.lstrip("/")
    base = Path(link.source).parent if link.source and link.source != "-" else Path.cwd()
    return base / target if target else Path(link.source or ".")


class _Anchors:
    """Each local file's anchors, read once however many links cite it."""

    def __init__(self) -> None:
        self.cache: dict[Path, frozenset[str] | None] = {}

    def of(self, path: Path) -> frozenset[str] | None:
        """Anchors of a Markdown or HTML file; None for other files (not checked)."""
        if path not in self.cache:
            suffix = path.suffix.lower()
            anchors: frozenset[str] | None = None
            try:
                if suffix in (".md", ".markdown"):
                    anchors = fragments.markdown_anchors(path.read_text("utf-8", "replace"))
                elif suffix in (".html", ".htm"):
                    anchors = fragments.html_anchors(path.read_bytes())
            except OSError:
                anchors = None
            self.cache[path] = anchors
        return self.cache[path]


def check_local(
    links: Sequence[Link],
    root: Path | None,
    include_fragments: bool = False,
    now: datetime | None = None,
) -> list[Check]:
    """A Check for every link that is not fetched."""
    now = now or datetime.now(UTC)
    anchors = _Anchors()
    out = []
    for link in links:
        kind = kind_of(link.url)
        if kind is Kind.SCHEME:
            scheme = link.url.split(":", 1)[0].lower() if ":" in link.url else "//"
            verdict, reason = Verdict.SKIPPED, "scheme"
            detail = f"{scheme}: links are not checked"
            if scheme == "//":
                detail = "a protocol-relative link (//host/…): not checked"
        else:
            path = _path(link, kind, root)
            if path is None:
                verdict, reason = Verdict.SKIPPED, "no-root-dir"
                detail = "a site-absolute link: give --root-dir to check it on disk"
            elif not path.exists():
                verdict, reason, detail = Verdict.DEAD, "missing-file", f"no such file: {path}"
            else:
                verdict, reason, detail = Verdict.OK, "file-exists", f"found: {path}"
                frag = fragments.fragment(link.url) if include_fragments else None
                found = anchors.of(path) if frag is not None and path.is_file() else None
                html = path.suffix.lower() in (".html", ".htm")
                if (
                    frag is not None
                    and found is not None
                    and not fragments.has_anchor(found, frag, html=html)
                ):
                    verdict, reason = Verdict.CHANGED, "fragment-missing"
                    detail = f"no anchor #{frag} in {path}"
        out.append(Check(link, None, None, verdict, reason, detail, now))
    return out


def merge(
    checks: Sequence[Check], extra: Sequence[Check], sources: Sequence[str]
) -> Sequence[Check]:
    """Both lists of checks in document order: by input file, then line (LazyChecks, already
    in that order, stay lazy: the few local checks are merged in as they come)."""
    if not extra:
        return checks
    order = {s: i for i, s in enumerate(sources)}

    def key(c: Check) -> tuple[int, int]:
        return (order.get(c.link.source, len(order)), c.link.line)

    if isinstance(checks, LazyChecks):
        local = sorted(extra, key=key)
        lazy, n = checks, len(checks) + len(local)
        return LazyChecks(
            lambda: heapq.merge(lazy, local, key=key),
            n,
            lambda: heapq.merge(lazy.lean(), local, key=key),
        )
    return tuple(sorted([*checks, *extra], key=key))
