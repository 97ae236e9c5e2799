"""CI report formats: JUnit XML, SARIF 2.1.0 (validated against its published schema) and
GitHub Actions annotations, from the real CLI against the local server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.report import junit, sarif
from crawler.report.annotations import lines
from crawler.sanitize import workflow_message, workflow_property
from crawler.types import Verdict
from tests.conftest import FIXTURES
from tests.factories import make_check, make_run
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "2"]
SCHEMA = FIXTURES / "sarif" / "sarif-2.1.0-rtm.4.json"


def _post(tmp_path: Path, server: LocalServer) -> Path:
    u = server.url
    p = tmp_path / "docs" / "post.md"
    p.parent.mkdir(parents=True)
    p.write_text(
        f"# Reading\n\n{u('/page/article')}\n\n语音识别的最新进展\n\n"  # ok, line 3
        f"{u('/status/404')}\n\nGone\n\n"  # dead, line 7
        f"{u('/page/article')}\n\nA title the page no longer has\n\n"  # changed, line 11
        f"{u('/drop')}\n\nDropped\n",  # error, line 15
        encoding="utf-8",
    )
    return p


def _check(tmp_path: Path, server: LocalServer, *args: str, env: dict[str, str] | None = None):
    post = _post(tmp_path, server)
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        cli,
        ["check", str(post), "--report-dir", str(out), "--no-history", *FAST, *args],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 3, result.output
    return post, out, result


def test_junit_one_testcase_per_reference_failures_for_dead_and_error(
    tmp_path: Path, server: LocalServer
) -> None:
    post, out, _ = _check(tmp_path, server, "--format", "junit", "--fail-on", "dead,error")
    assert sorted(p.name for p in out.iterdir()) == ["report.junit.xml"]
    root = ET.parse(out / "report.junit.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures")) == ("4", "2")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == str(post)
    cases = suite.findall("testcase")
    assert [c.get("line") for c in cases] == ["3", "7", "11", "15"]
    failed = {c.get("line"): c.find("failure") for c in cases}
    assert failed["3"] is None and failed["11"] is None
    assert failed["7"] is not None and failed["7"].get("type") == "dead"
    assert failed["15"] is not None and failed["15"].get("type") == "error"
    assert "http-404" in (failed["7"].get("message") or "")


def _failures(out: Path) -> dict[str, str | None]:
    """line → the failure's type (None: no failure) of each testcase of report.junit.xml."""
    root = ET.parse(out / "report.junit.xml").getroot()
    cases = root.findall("testsuite/testcase")
    failed = {c.get("line") or "": c.find("failure") for c in cases}
    assert root.get("failures") == str(sum(f is not None for f in failed.values()))
    return {line: None if f is None else f.get("type") for line, f in failed.items()}


def test_junit_failures_are_the_fail_on_verdicts(tmp_path: Path, server: LocalServer) -> None:
    """Only what fails the run is a failure (issue 13): the default fails on dead alone, so an
    error link (line 15) passes; --fail-on changed makes the changed link (line 11) fail."""
    _, out, _ = _check(tmp_path / "a", server, "--format", "junit")
    assert _failures(out) == {"3": None, "7": "dead", "11": None, "15": None}
    _, out, _ = _check(tmp_path / "b", server, "--format", "junit", "--fail-on", "dead,changed")
    assert _failures(out) == {"3": None, "7": "dead", "11": "changed", "15": None}


def test_report_renders_junit_with_its_fail_on(tmp_path: Path, server: LocalServer) -> None:
    post = _post(tmp_path, server)
    db = ["--db", str(tmp_path / "h.sqlite")]
    args = ["check", str(post), "--report-dir", str(tmp_path / "r"), *db, *FAST]
    assert CliRunner().invoke(cli, args).exit_code == 3
    out = tmp_path / "again"
    args = ["report", "--format", "junit", "--report-dir", str(out), *db, "--fail-on", "error"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert _failures(out) == {"3": None, "7": None, "11": None, "15": "error"}


def test_junit_stays_well_formed_with_hostile_text() -> None:
    check = make_check(
        url="https://example.com/a?x=<b>&y=\"'", verdict=Verdict.DEAD, detail="bad \x01\x1b[31m ]]>"
    )
    text = junit.render(make_run(check, make_check(verdict=Verdict.SKIPPED, reason="scheme")))
    root = ET.fromstring(text.encode("utf-8"))
    cases = root.findall("testsuite/testcase")
    assert cases[0].get("name") == "https://example.com/a?x=<b>&y=\"'"
    assert "]]>" in (cases[0].findtext("failure") or "")
    assert cases[1].find("skipped") is not None
    assert root.get("skipped") == "1"


def _validate(doc: dict) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(doc)


def test_sarif_validates_against_the_schema_file_line_rule(
    tmp_path: Path, server: LocalServer
) -> None:
    post, out, _ = _check(tmp_path, server, "--format", "sarif,json")
    doc = json.loads((out / "report.sarif").read_text(encoding="utf-8"))
    _validate(doc)
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    got = [
        (
            r["ruleId"],
            r["level"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in run["results"]
    ]
    uri = post.as_posix()
    assert got == [
        ("dead", "error", uri, 7),
        ("changed", "warning", uri, 11),
        ("error", "warning", uri, 15),  # --fail-on dead (the default): an error link passes
    ]
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in run["results"])


def _sarif_levels(out: Path) -> tuple[list[tuple[int, str]], dict[str, str]]:
    """(line, level) of each result of report.sarif, and each rule's default level."""
    doc = json.loads((out / "report.sarif").read_text(encoding="utf-8"))
    _validate(doc)
    (run,) = doc["runs"]
    results = [
        (r["locations"][0]["physicalLocation"]["region"]["startLine"], r["level"])
        for r in run["results"]
    ]
    rules = {r["id"]: r["defaultConfiguration"]["level"] for r in run["tool"]["driver"]["rules"]}
    return results, rules


def test_sarif_levels_follow_fail_on(tmp_path: Path, server: LocalServer) -> None:
    """SARIF's errors are the --fail-on verdicts, as JUnit's failures and the ::error
    annotations are: the others are warnings (or notes, for blocked)."""
    _, out, _ = _check(tmp_path / "a", server, "--format", "sarif", "--fail-on", "changed,error")
    results, rules = _sarif_levels(out)
    assert results == [(7, "warning"), (11, "error"), (15, "error")]
    assert rules == {
        "dead": "warning", "error": "error", "changed": "error", "redirected": "warning",
        "blocked": "note",
    }  # fmt: skip
    _, out, _ = _check(tmp_path / "b", server, "--format", "sarif", "--fail-on", "dead,blocked")
    results, rules = _sarif_levels(out)
    assert results == [(7, "error"), (11, "warning"), (15, "warning")]
    assert (rules["dead"], rules["error"], rules["blocked"]) == ("error", "warning", "error")


def test_report_renders_sarif_with_its_fail_on(tmp_path: Path, server: LocalServer) -> None:
    post = _post(tmp_path, server)
    db = ["--db", str(tmp_path / "h.sqlite")]
    args = ["check", str(post), "--report-dir", str(tmp_path / "r"), *db, *FAST]
    assert CliRunner().invoke(cli, args).exit_code == 3
    out = tmp_path / "again"
    args = ["report", "--format", "sarif", "--report-dir", str(out), *db, "--fail-on", "error"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert _sarif_levels(out)[0] == [(7, "warning"), (11, "warning"), (15, "error")]


def test_sarif_schema_catches_a_broken_log() -> None:
    """The validation above can fail: a result without a message is refused."""
    doc = sarif.document(make_run(make_check(verdict=Verdict.DEAD)))
    _validate(doc)
    del doc["runs"][0]["results"][0]["message"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)


def test_sarif_of_stdin_has_no_location() -> None:
    check = make_check(verdict=Verdict.BLOCKED)
    object.__setattr__(check.link, "source", "-")
    doc = sarif.document(make_run(check))
    _validate(doc)
    assert "locations" not in doc["runs"][0]["results"][0]


def _annotations(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("::")]


def test_annotations_in_github_actions(tmp_path: Path, server: LocalServer) -> None:
    post, _, result = _check(tmp_path, server, "--format", "json", env={"GITHUB_ACTIONS": "true"})
    got = _annotations(result.stdout)
    f = workflow_property(str(post))
    heads = [a.split("::")[1] for a in got]
    assert heads[:2] == [
        f"error file={f},line=7,title=dead link (http-404)",
        f"warning file={f},line=11,title=changed link (title-changed)",
    ]
    # an error is not what fails the run by default (--fail-on dead): a warning, not an error
    assert heads[2].startswith(f"warning file={f},line=15,title=error link (")
    assert got[0].startswith(f"::error file={f},line=7,title=dead link (http-404)::")
    assert got[0].split("::", 2)[2].startswith(server.url("/status/404") + ": ")


def test_annotations_are_errors_for_the_fail_on_verdicts(
    tmp_path: Path, server: LocalServer
) -> None:
    _, _, result = _check(
        tmp_path, server, "--format", "json", "--annotations", "--fail-on", "changed,error"
    )
    kinds = [(a.split("::")[1].split(" ")[0], a.split("line=")[1].split(",")[0])
             for a in _annotations(result.stdout)]  # fmt: skip
    assert kinds == [("warning", "7"), ("error", "11"), ("error", "15")]


def test_annotations_forced_and_stopped(tmp_path: Path, server: LocalServer) -> None:
    _, _, forced = _check(tmp_path / "a", server, "--format", "json", "--annotations")
    assert len(_annotations(forced.stdout)) == 3
    _, _, stopped = _check(
        tmp_path / "b",
        server,
        "--format",
        "json",
        "--no-annotations",
        env={"GITHUB_ACTIONS": "true"},
    )
    assert _annotations(stopped.stdout) == []
    _, _, plain = _check(tmp_path / "c", server, "--format", "json")
    assert _annotations(plain.stdout) == []


def test_annotation_escaping() -> None:
    assert workflow_message("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert workflow_property("a,b:c%\n") == "a%2Cb%3Ac%25%0A"
    check = make_check(
        url="https://example.com/x", verdict=Verdict.DEAD, detail="title\n::error::injected"
    )
    (line,) = lines(make_run(check))
    assert line.count("\n") == 0
    assert line.startswith("::error file=post.md,line=1,title=dead link (alive)::")
    assert line.endswith("https://example.com/x: title%0A::error::injected")
