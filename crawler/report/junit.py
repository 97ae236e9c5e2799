"""report.junit.xml: one testcase per reference, a failure for each link whose verdict fails the
run (--fail-on, default: dead).

The layout CI servers read (Jenkins, GitLab, Azure): <testsuites> with one <testsuite> per
input file. Characters that XML 1.0 cannot carry are dropped from fetched text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection
from typing import TextIO

from crawler.config import DEFAULT_FAIL_ON
from crawler.types import Check, Run, Verdict, lean

# Not allowed anywhere in an XML 1.0 document, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _text(s: str | None) -> str:
    return _NOT_XML.sub("", s or "")


def _case(suite: ET.Element, check: Check, fail_on: Collection[str]) -> None:
    link = check.link
    case = ET.SubElement(
        suite,
        "testcase",
        name=_text(link.url),
        classname=_text(link.source or "-"),
        file=_text(link.source or "-"),
        line=str(link.line),
        time=f"{(check.fetch.elapsed_ms if check.fetch else 0) / 1000:.3f}",
    )
    message = f"{check.verdict.value}: {check.reason}"
    if check.verdict.value in fail_on:
        failure = ET.SubElement(case, "failure", message=_text(message), type=check.verdict.value)
        failure.text = _text(f"{link.url}\n{check.detail}\nline {link.line} of {link.source}")
        if not check.checked_this_run:  # a verdict that stands from an earlier run
            failure.text += f"\nlast checked {check.checked_at:%Y-%m-%d %H:%M} UTC"
    elif check.verdict is Verdict.SKIPPED:
        ET.SubElement(case, "skipped", message=_text(f"{check.reason}: {check.detail}"))
    else:
        out = ET.SubElement(case, "system-out")
        out.text = _text(f"{message}: {check.detail}")


def document(run: Run, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> ET.Element:
    """The report as an element tree; the verdicts in fail_on are failures."""
    by_source: dict[str, list[Check]] = {}
    for c in lean(run.checks):
        by_source.setdefault(c.link.source or "-", []).append(c)
    root = ET.Element("testsuites", name="link-crawler")
    totals = [0, 0, 0]
    for source, checks in by_source.items():
        failures = sum(c.verdict.value in fail_on for c in checks)
        skipped = sum(c.verdict is Verdict.SKIPPED for c in checks)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_text(source),
            tests=str(len(checks)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            timestamp=run.started_at.isoformat(timespec="seconds"),
        )
        for c in checks:
            _case(suite, c, fail_on)
        totals = [totals[0] + len(checks), totals[1] + failures, totals[2] + skipped]
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", "0")
    root.set("skipped", str(totals[2]))
    root.set("time", f"{(run.finished_at - run.started_at).total_seconds():.3f}")
    return root


def render(run: Run, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> str:
    """The whole report as XML text."""
    ET.indent(root := document(run, fail_on), space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write(run: Run, out: TextIO, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> None:
    """Write the report to out."""
    out.write(render(run, fail_on))
