"""GitHub Actions workflow commands: one ::error line per link that fails the run (--fail-on),
a ::warning line per other broken or changed link.

Escaped as GitHub's runner unescapes them (crawler.sanitize.workflow_message and
workflow_property).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from crawler.config import DEFAULT_FAIL_ON
from crawler.sanitize import workflow_message, workflow_property
from crawler.types import BROKEN, Run, Verdict, lean


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
            props.append(f"file={workflow_property(c.link.source)}")
            props.append(f"line={c.link.line}")
        props.append(f"title={workflow_property(f'{c.verdict.value} link ({c.reason})')}")
        message = f"{c.url}: {c.detail or c.reason}"
        yield f"::{command} {','.join(props)}::{workflow_message(message)}"
