"""GitHub Actions workflow commands: one ::error or ::warning line per broken or changed link.

Escaped as GitHub's runner unescapes them: in the message `%`, CR and LF; in a property value
also `:` and `,`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from crawler.types import BROKEN, Run, Verdict

# Controls other than CR and LF (which are escaped): fetched text must not drive the log viewer.
_CONTROLS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def escape_data(s: str) -> str:
    """A workflow command's message."""
    s = _CONTROLS.sub("", s)
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    """A workflow command's property value."""
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def lines(run: Run) -> Iterator[str]:
    """The annotation lines of a run, in the order of its checks."""
    for c in run.checks:
        if c.verdict in BROKEN:
            command = "error"
        elif c.verdict is Verdict.CHANGED:
            command = "warning"
        else:
            continue
        props = []
        if c.link.source and c.link.source != "-":
            props.append(f"file={escape_property(c.link.source)}")
            props.append(f"line={c.link.line}")
        props.append(f"title={escape_property(f'{c.verdict.value} link ({c.reason})')}")
        message = f"{c.url}: {c.detail or c.reason}"
        yield f"::{command} {','.join(props)}::{escape_data(message)}"
