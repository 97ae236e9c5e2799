"""report.sarif: SARIF 2.1.0 for GitHub code scanning — one result per link that is not ok,
located at its file and line, with the verdict as the rule. A verdict that fails the run
(--fail-on, default: dead) is an error; the others keep their rule's level, an error one
becoming a warning (as JUnit's failures and the ::error annotations).

tests/test_report_ci.py validates it against the published JSON schema.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import PurePath
from typing import Any, TextIO

from crawler import __version__
from crawler.config import DEFAULT_FAIL_ON
from crawler.types import Check, Run, Verdict, lean

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/link-crawler"

#: verdict → (SARIF level when it fails the run, what the rule says). ok and skipped links
#: give no result.
RULES: dict[Verdict, tuple[str, str]] = {
    Verdict.DEAD: ("error", "The link is dead: 404/410, or the site's own removal notice."),
    Verdict.ERROR: ("error", "The link could not be checked: network failure or 5xx."),
    Verdict.CHANGED: ("warning", "The page is there, but not what the post cites."),
    Verdict.REDIRECTED: ("warning", "The page moved permanently: the post should be updated."),
    Verdict.BLOCKED: ("note", "The site refused the robot: liveness unknown."),
}
_RULE_IDS = list(RULES)


def level(verdict: Verdict, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> str:
    """The SARIF level of a verdict's results: error when it fails the run, else its rule's
    level with error lowered to warning."""
    if verdict.value in fail_on:
        return "error"
    default = RULES[verdict][0]
    return "warning" if default == "error" else default


def _location(check: Check) -> list[dict[str, Any]]:
    source = check.link.source
    if not source or source == "-":
        return []
    uri = PurePath(source).as_posix()
    return [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": max(1, check.link.line)},
            }
        }
    ]


def _result(check: Check, levels: dict[Verdict, str]) -> dict[str, Any]:
    text = f"{check.verdict.value} link {check.url}: {check.detail or check.reason}"
    out: dict[str, Any] = {
        "ruleId": check.verdict.value,
        "ruleIndex": _RULE_IDS.index(check.verdict),
        "level": levels[check.verdict],
        "message": {"text": text},
        "locations": _location(check),
        "partialFingerprints": {"crawlerLink/v1": f"{check.url}|{check.verdict.value}"},
        "properties": {
            "url": check.url,
            "reason": check.reason,
            "checked_at": check.checked_at.isoformat(timespec="seconds"),
            "checked_this_run": check.checked_this_run,
        },
    }
    if not out["locations"]:
        del out["locations"]
    return out


def _levels(fail_on: Collection[str]) -> dict[Verdict, str]:
    return {verdict: level(verdict, fail_on) for verdict in RULES}


def document(
    run: Run,
    fail_on: Collection[str] = DEFAULT_FAIL_ON,
    results: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The SARIF log as a JSON-ready dict; the verdicts in fail_on are errors. `results`:
    the run's results when already made (by default from a pass of its own)."""
    levels = _levels(fail_on)
    if results is None:
        results = [_result(c, levels) for c in lean(run.checks) if c.verdict in RULES]
    rules = [
        {
            "id": verdict.value,
            "name": f"{verdict.value}-link",
            "shortDescription": {"text": f"{verdict.value} link"},
            "fullDescription": {"text": text},
            "defaultConfiguration": {"level": levels[verdict]},
        }
        for verdict, (_, text) in RULES.items()
    ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "link-crawler",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not run.network_down,
                        "startTimeUtc": run.started_at.isoformat(timespec="seconds"),
                        "endTimeUtc": run.finished_at.isoformat(timespec="seconds"),
                    }
                ],
            }
        ],
    }


def render(run: Run, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> str:
    """The whole log as JSON text."""
    return json.dumps(document(run, fail_on), ensure_ascii=False, indent=1) + "\n"


def write(run: Run, out: TextIO, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> None:
    """Write the log to out."""
    out.write(render(run, fail_on))


class Feed:
    """The log, written at close() from the checks fed to it (it holds their results)."""

    __slots__ = ("run", "out", "fail_on", "levels", "results")

    def __init__(self, run: Run, out: TextIO, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> None:
        self.run, self.out, self.fail_on = run, out, fail_on
        self.levels = _levels(fail_on)
        self.results: list[dict[str, Any]] = []

    def __call__(self, check: Check) -> None:
        if check.verdict in RULES:
            self.results.append(_result(check, self.levels))

    def close(self) -> None:
        """Write the log."""
        doc = document(self.run, self.fail_on, self.results)
        self.out.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
