"""Reports rendered from Run values: the JSON contract and the Markdown report."""

from __future__ import annotations

import json
import re
from pathlib import Path

from crawler.report import render, write_reports
from crawler.sanitize import table_cell as cell
from crawler.types import Verdict
from tests.factories import make_check, make_run

FIELDS = {
    "url",
    "line",
    "section",
    "listed_title",
    "verdict",
    "reason",
    "detail",
    "http_status",
    "final_url",
    "redirects",
    "title",
    "summary",
    "checked_at",
    "attempts",
    "elapsed_ms",
}


def test_json_contract() -> None:
    run = make_run(
        make_check("https://a.example/1", Verdict.OK, section=("语音识别", "参考"), line=21),
        make_check("https://a.example/2", Verdict.DEAD, reason="http-404"),
    )
    doc = json.loads(render(run, "json"))
    assert doc["schema"] == 1
    assert doc["source"] == ["post.md"]  # a list, whatever the number of inputs
    assert doc["summary"] == {
        "ok": 1,
        "redirected": 0,
        "changed": 0,
        "dead": 1,
        "blocked": 0,
        "error": 0,
    }
    first = doc["links"][0]
    assert set(first) >= FIELDS
    assert first["section"] == "语音识别 / 参考" and first["line"] == 21
    assert doc["links"][1]["verdict"] == "dead"


def test_markdown_groups_broken_links_by_verdict_and_section() -> None:
    run = make_run(
        make_check("https://a.example/1", Verdict.DEAD, section=("A",), reason="http-404"),
        make_check("https://a.example/2", Verdict.CHANGED, section=("B", "C"), title="New"),
        make_check("https://a.example/3", Verdict.OK),
    )
    md = render(run, "md")
    assert md.index("## Dead (1)") < md.index("## Changed (1)")
    assert "### B / C" in md
    assert "https://a.example/3" not in md  # ok links are only counted
    assert "| dead | 1 |" in md


def test_markdown_escapes_hostile_titles() -> None:
    evil = "a|b\nc <script>alert(1)</script> [x](javascript:alert(1))"
    run = make_run(make_check("https://a.example/1", Verdict.CHANGED, title=evil))
    md = render(run, "md")
    row = next(line for line in md.splitlines() if "a.example/1" in line)
    assert row.count(" | ") == 6  # no extra columns from the title's pipe
    assert "<script>" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # the bracket is escaped
    assert cell("x" * 500).endswith("…")


def test_all_good_says_so() -> None:
    md = render(make_run(make_check()), "md")
    assert "All links are alive" in md


def test_write_reports_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    run = make_run(make_check())
    paths = write_reports(run, tmp_path / "out", ["json", "md"])
    assert [p.name for p in paths] == ["report.json", "report.md"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json", "report.md"]


def test_markdown_groups_by_file_then_section_when_several_files() -> None:
    from dataclasses import replace

    a = make_check("https://a.example/1", Verdict.DEAD, section=("S",))
    b = make_check("https://a.example/2", Verdict.DEAD, section=("S",))
    b = replace(b, link=replace(b.link, source="other.md"))
    run = replace(make_run(a, b), sources=("post.md", "other.md"))
    md = render(run, "md")
    assert "### post.md / S" in md and "### other.md / S" in md


def test_json_is_streamed_in_the_indented_layout() -> None:
    """report.json is written a record at a time, in json.dumps(doc, indent=1)'s exact layout."""
    from dataclasses import replace

    from tests.factories import make_fetch_result, with_history

    odd = make_check("https://a.example/3", Verdict.CHANGED, section=(), title='q"\x00\\\n')
    odd = replace(odd, link=replace(odd.link, listed_title=None), meta=None)
    checks = [
        make_check("https://a.example/1", Verdict.OK, section=("语音识别", "参考"), line=21),
        replace(
            make_check("https://a.example/2", Verdict.REDIRECTED),
            fetch=make_fetch_result(
                "https://a.example/2",
                hops=((301, "https://b.example/"),),
                final_url="https://b.example/",
            ),
        ),
        odd,
        replace(odd, fetch=None),
        with_history(make_check("https://a.example/4", Verdict.DEAD), Verdict.OK, Verdict.OK),
    ]
    for run in (make_run(*checks), make_run()):
        text = render(run, "json")
        assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=1) + "\n"
    assert len(json.loads(render(make_run(*checks), "json"))["links"]) == 5


def test_markdown_cells_drop_bidi_and_zero_width_controls() -> None:
    assert cell("evil\u202egnp.exe\u200b") == "evilgnp.exe"
