"""report.sarif: SARIF 2.1.0 for GitHub code scanning — one result per link that is not ok,
located at its file and line, with the verdict as the rule.

tests/test_report_ci.py validates it against the published JSON schema.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any, TextIO

from crawler import __version__
from crawler.types import Check, Run, Verdict

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/link-crawler"

#: verdict → (SARIF level, what the rule says). ok and skipped links give no result.
RULES: dict[Verdict, tuple[str, str]] = {
    Verdict.DEAD: ("error", "The link is dead: 404/410, or the site's own removal notice."),
    Verdict.ERROR: ("error", "The link could not be checked: network failure or 5xx."),
    Verdict.CHANGED: ("warning", "The page is there, but not what the post cites."),
    Verdict.REDIRECTED: ("warning", "The page moved permanently: the post should be updated."),
    Verdict.BLOCKED: ("note", "The site refused the robot: liveness unknown."),
}
_RULE_IDS = list(RULES)


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


def _result(check: Check) -> dict[str, Any]:
    level, _ = RULES[check.verdict]
    text = f"{check.verdict.value} link {check.url}: {check.detail or check.reason}"
    out: dict[str, Any] = {
        "ruleId": check.verdict.value,
        "ruleIndex": _RULE_IDS.index(check.verdict),
        "level": level,
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


def document(run: Run) -> dict[str, Any]:
    """The SARIF log as a JSON-ready dict."""
    rules = [
        {
            "id": verdict.value,
            "name": f"{verdict.value}-link",
            "shortDescription": {"text": f"{verdict.value} link"},
            "fullDescription": {"text": text},
            "defaultConfiguration": {"level": level},
        }
        for verdict, (level, text) in RULES.items()
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
                "results": [_result(c) for c in run.checks if c.verdict in RULES],
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


def render(run: Run) -> str:
    """The whole log as JSON text."""
    return json.dumps(document(run), ensure_ascii=False, indent=1) + "\n"


def write(run: Run, out: TextIO) -> None:
    """Write the log to out."""
    out.write(render(run))
