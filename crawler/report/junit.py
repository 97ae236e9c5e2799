"""report.junit.xml: one testcase per reference, a failure for each link whose verdict fails the
run (--fail-on, default: dead).

The layout CI servers read (Jenkins, GitLab, Azure): <testsuites> with one <testsuite> per
input file. Characters that XML 1.0 cannot carry are dropped from fetched text
(crawler.sanitize.xml_text).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Collection
from typing import TextIO

from crawler.config import DEFAULT_FAIL_ON
from crawler.sanitize import xml_text
from crawler.types import Check, Run, Verdict, lean


def _case(check: Check, fail_on: Collection[str]) -> ET.Element:
    link = check.link
    case = ET.Element(
        "testcase",
        name=xml_text(link.url),
        classname=xml_text(link.source or "-"),
        file=xml_text(link.source or "-"),
        line=str(link.line),
        time=f"{(check.fetch.elapsed_ms if check.fetch else 0) / 1000:.3f}",
    )
    message = f"{check.verdict.value}: {check.reason}"
    if check.verdict.value in fail_on:
        failure = ET.SubElement(
            case, "failure", message=xml_text(message), type=check.verdict.value
        )
        failure.text = xml_text(f"{link.url}\n{check.detail}\nline {link.line} of {link.source}")
        if not check.checked_this_run:  # a verdict that stands from an earlier run
            failure.text += f"\nlast checked {check.checked_at:%Y-%m-%d %H:%M} UTC"
    elif check.verdict is Verdict.SKIPPED:
        ET.SubElement(case, "skipped", message=xml_text(f"{check.reason}: {check.detail}"))
    else:
        out = ET.SubElement(case, "system-out")
        out.text = xml_text(f"{message}: {check.detail}")
    return case


def _start(tag: str, attrs: dict[str, str]) -> str:
    """An element's start tag as ElementTree writes it (an empty element ends in " />")."""
    return ET.tostring(ET.Element(tag, attrs), "unicode")[:-3] + ">"


def _suites(run: Run) -> tuple[dict[str, dict[str, int]], bool]:
    """Each testsuite's (input file's) checks per verdict, in order, and whether each one's
    checks come in one stretch (then one pass writes them all)."""
    t = run.tally()
    suites: dict[str, dict[str, int]] = {}
    for source, counts in t.by_source.items():
        into = suites.setdefault(source or "-", {})
        for v, n in counts.items():
            into[v] = into.get(v, 0) + n
    return suites, t.grouped and len(suites) == len(t.by_source)


class Feed:
    """The report written to out as the run's checks are fed to it, a testcase at a time, laid
    out as ElementTree indents the whole document (one space a level); the verdicts in fail_on
    are failures. The suites' counts are the run's tally. When an input's checks do not come
    in one stretch, the cases are written at close(), a pass over the checks per input."""

    def __init__(self, run: Run, out: TextIO, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> None:
        self.run, self.out, self.fail_on = run, out, fail_on
        suites, self.grouped = _suites(run)
        self.tally = {
            s: (sum(c.values()), sum(c.get(v, 0) for v in fail_on), c.get(SKIPPED, 0))
            for s, c in suites.items()
        }
        root = {
            "name": "link-crawler",
            "tests": str(sum(t[0] for t in self.tally.values())),
            "failures": str(sum(t[1] for t in self.tally.values())),
            "errors": "0",
            "skipped": str(sum(t[2] for t in self.tally.values())),
            "time": f"{(run.finished_at - run.started_at).total_seconds():.3f}",
        }
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        self.empty = not suites
        if self.empty:
            out.write(ET.tostring(ET.Element("testsuites", root), "unicode") + "\n")
            return
        out.write(_start("testsuites", root))
        self.started = run.started_at.isoformat(timespec="seconds")
        self.suites = iter(self.tally.items())
        self.left = 0  # cases still to come in the open suite
        self.open = False
        self.buf: list[str] = []

    def _next_suite(self) -> str | None:
        """Close the open suite, open the next one; its input, or None when none is left."""
        if self.open:
            self.out.write("".join(self.buf) + "\n </testsuite>")
            self.buf.clear()
            self.open = False
        item = next(self.suites, None)
        if item is None:
            return None
        source, (tests, failures, skipped) = item
        attrs = {
            "name": xml_text(source), "tests": str(tests), "failures": str(failures),
            "errors": "0", "skipped": str(skipped), "timestamp": self.started,
        }  # fmt: skip
        self.out.write("\n " + _start("testsuite", attrs))
        self.open = True
        self.left = tests
        return source

    def _case(self, c: Check) -> None:
        case = _case(c, self.fail_on)
        ET.indent(case, space=" ", level=2)
        self.buf.append("\n  " + ET.tostring(case, "unicode"))
        if len(self.buf) >= 256:
            self.out.write("".join(self.buf))
            self.buf.clear()

    def __call__(self, check: Check) -> None:
        if self.empty or not self.grouped:
            return
        while not self.left:  # the next `tests` checks are the next suite's
            if self._next_suite() is None:
                return
        self._case(check)
        self.left -= 1

    def close(self) -> None:
        """Write the rest (an input whose checks are not in one stretch: a pass each)."""
        if self.empty:
            return
        while (source := self._next_suite()) is not None:
            if not self.grouped:
                for c in lean(self.run.checks):
                    if (c.link.source or "-") == source:
                        self._case(c)
        self.out.write("\n</testsuites>\n")


SKIPPED = Verdict.SKIPPED.value


def write(run: Run, out: TextIO, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> None:
    """Write the report to out a testcase at a time, laid out as ElementTree indents the whole
    document (one space a level); the verdicts in fail_on are failures."""
    feed = Feed(run, out, fail_on)
    if feed.grouped:
        for c in lean(run.checks):
            feed(c)
    feed.close()


def render(run: Run, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> str:
    """The whole report as XML text."""
    out = io.StringIO()
    write(run, out, fail_on)
    return out.getvalue()
