"""Report stage: Run → text. One pure renderer per format behind `render`; `write_reports` saves.

The JSON and HTML reports are written to their file a piece at a time (never the whole text in
memory), each into a temporary file renamed over the old one when complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection, Iterable
from functools import partial
from pathlib import Path
from typing import TextIO

from crawler.config import DEFAULT_FAIL_ON
from crawler.config import DEFAULT_FORMATS as DEFAULT_FORMATS
from crawler.errors import CrawlerError
from crawler.report import html, issue, json_report, junit, markdown, sarif
from crawler.report.notes import partial_note as partial_note
from crawler.types import Run

#: format name → (file name, renderer)
FORMATS: dict[str, tuple[str, Callable[[Run], str]]] = {
    "json": ("report.json", json_report.render),
    "md": ("report.md", markdown.render),
    "html": ("report.html", html.render),
    "junit": ("report.junit.xml", junit.render),
    "sarif": ("report.sarif", sarif.render),
    "issue": ("issue.md", issue.render),
}

#: format name → a writer of the same text to an open file, a piece at a time
WRITERS: dict[str, Callable[[Run, TextIO], None]] = {
    "json": json_report.write,
    "md": markdown.write,
    "html": html.write,
    "junit": junit.write,
    "sarif": sarif.write,
    "issue": issue.write,
}


def render(run: Run, fmt: str) -> str:
    """Render a run in one format."""
    return FORMATS[fmt][1](run)


def new_file_mode() -> int:
    """The mode open() gives a new file here: 0o666 less the umask (mkstemp's files are 0o600)."""
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, text: str | Callable[[TextIO], object]) -> None:
    """Write a file so that readers see the old or the new version, never half of one.

    `text` is the content, or a function that writes it to the open file. The file gets the
    mode a new file gets (the umask applies), not mkstemp's 0o600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 18) as f:
            if isinstance(text, str):
                f.write(text)
            else:
                text(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(
    run: Run,
    report_dir: str | os.PathLike[str],
    formats: Iterable[str],
    fail_on: Collection[str] = DEFAULT_FAIL_ON,
) -> list[Path]:
    """Render and write every requested format into report_dir; return the paths written.
    `fail_on`: the verdicts that fail the run, JUnit's failures and SARIF's errors."""
    out: list[Path] = []
    directory = Path(report_dir)
    for fmt in formats:
        name, _ = FORMATS[fmt]
        path = directory / name
        try:
            writer = WRITERS[fmt]
            if fmt == "junit":
                writer = partial(junit.write, fail_on=fail_on)
            elif fmt == "sarif":
                writer = partial(sarif.write, fail_on=fail_on)
            write_atomic(path, partial(writer, run))
        except OSError as exc:
            raise CrawlerError(f"cannot write {path}: {exc.strerror or exc}") from exc
        out.append(path)
    return out
