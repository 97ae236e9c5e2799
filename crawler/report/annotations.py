"""GitHub Actions workflow commands: one ::error line per link that fails the run (--fail-on),
a ::warning line per other broken or changed link.

Escaped as GitHub's runner unescapes them: in the message `%`, CR and LF; in a property value
also `:` and `,`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from crawler.config import DEFAULT_FAIL_ON
from crawler.types import BROKEN, Run, Verdict, lean

# Controls other than CR and LF (which are escaped): fetched text must not drive the log viewer.
_CONTROLS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def escape_data(s: str) -> str:
    """A workflow command's message."""
    s = _CONTROLS.sub("", s)
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    """A workflow command's property value."""
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def lines(run: Run, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> Iterator[str]:
    """The annotation lines of a run, in the order of its checks: an error for each link with
    a `fail_on` verdict (what fails the run), a warning for the other dead, error or changed
    links."""
    for c in lean(run.checks):
        if c.verdict.value in fail_on:
            command = "error"
        elif c.verdict in BROKEN or c.verdict is Verdict.CHANGED:
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
