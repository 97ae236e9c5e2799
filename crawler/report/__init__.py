"""Report stage: Run → text. One pure renderer per format behind `render`; `write_reports` saves."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from crawler.config import DEFAULT_FORMATS as DEFAULT_FORMATS
from crawler.errors import CrawlerError
from crawler.report import html, json_report, markdown
from crawler.types import Run

#: format name → (file name, renderer)
FORMATS: dict[str, tuple[str, Callable[[Run], str]]] = {
    "json": ("report.json", json_report.render),
    "md": ("report.md", markdown.render),
    "html": ("report.html", html.render),
}


def render(run: Run, fmt: str) -> str:
    """Render a run in one format."""
    return FORMATS[fmt][1](run)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new version, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(
    run: Run, report_dir: str | os.PathLike[str], formats: Iterable[str]
) -> list[Path]:
    """Render and write every requested format into report_dir; return the paths written."""
    out: list[Path] = []
    directory = Path(report_dir)
    for fmt in formats:
        name, fn = FORMATS[fmt]
        path = directory / name
        try:
            write_atomic(path, fn(run))
        except OSError as exc:
            raise CrawlerError(f"cannot write {path}: {exc.strerror or exc}") from exc
        out.append(path)
    return out
