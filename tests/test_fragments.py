"""--include-fragments: a cited #fragment must name an anchor of the page (HTML ids, <a name>,
GitHub's user-content- ids, Markdown heading slugs); each page is fetched once however many of
its fragments are cited (the server counts the requests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.fragments import has_anchor, markdown_anchors, slug
from tests import server as test_server
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "2"]
ANCHORS_PAGE = b"""<!DOCTYPE html><html><head><title>Anchors</title></head><body>
<h2 id="intro">Intro</h2><a name="legacy"></a><div id="user-content-install">x</div>
<p id="%E4%B8%AD">encoded id</p><p id="\xe4\xb8\xad\xe6\x96\x87">utf-8 id</p></body></html>"""
README = "# Tool\n\n## Install & run\n\n## Install & run\n\n### `code` heading\n"


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(test_server.PAGES, "anchors", (200, test_server.HTML, ANCHORS_PAGE))
    monkeypatch.setitem(
        test_server.PAGES,
        "readme.md",
        (200, "text/markdown; charset=utf-8", README.encode()),
    )


def _check(tmp_path: Path, server: LocalServer, *extra: str) -> tuple[int, dict[str, dict]]:
    a, md = server.url("/page/anchors"), server.url("/page/readme.md")
    post = tmp_path / "post.md"
    post.write_text(
        "\n\n".join(
            [
                f"<{a}#intro> <{a}#legacy> <{a}#install> <{a}#missing>",
                f"<{a}#:~:text=Intro> <{a}#!/route> <{a}#%E4%B8%AD> [](<{a}#中文>)",
                f"<{md}#install--run> <{md}#install--run-1> <{md}#code-heading>",
                f"<{md}#nope> <{a}>",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "r"
    r = CliRunner().invoke(
        cli,
        ["check", str(post), "--format", "json", "--report-dir", str(out), *FAST, *extra],
        catch_exceptions=False,
    )
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return r.exit_code, {r["url"].split("/page/")[1]: r for r in doc["links"]}


def test_fragments_checked_one_fetch_per_page(
    tmp_path: Path, server: LocalServer, pages: None
) -> None:
    code, got = _check(tmp_path, server, "--include-fragments")
    assert code == 0
    verdicts = {k: (v["verdict"], v["reason"]) for k, v in got.items()}
    missing = {k for k, v in verdicts.items() if v == ("changed", "fragment-missing")}
    assert missing == {"anchors#missing", "readme.md#nope"}
    assert got["anchors#missing"]["detail"] == "the page has no anchor #missing"
    assert all(v[0] == "ok" for k, v in verdicts.items() if k not in missing), verdicts
    assert len(got) == 13
    assert server.hits["/page/anchors"] == 1
    assert server.hits["/page/readme.md"] == 1


def test_fragments_are_not_checked_by_default(
    tmp_path: Path, server: LocalServer, pages: None
) -> None:
    code, got = _check(tmp_path, server)
    assert code == 0
    assert got["anchors#missing"]["verdict"] == "ok"


def test_history_keeps_the_page_and_a_second_run_still_checks_fragments(
    tmp_path: Path, server: LocalServer, pages: None
) -> None:
    _check(tmp_path, server, "--include-fragments")
    code, got = _check(tmp_path, server, "--include-fragments", "--max-age", "1h")
    assert code == 0
    assert got["anchors#missing"]["reason"] == "fragment-missing"
    assert server.hits["/page/anchors"] == 2  # once a run: a reused result has no anchors


def test_slugs_as_github_makes_them() -> None:
    assert slug("Install & run") == "install--run"
    assert slug("Hello, World!") == "hello-world"
    assert slug("语音 识别") == "语音-识别"
    anchors = markdown_anchors(README + '\n<a name="here"></a>\n## Custom {#mine}\n')
    assert {"tool", "install--run", "install--run-1", "code-heading", "here", "mine"} <= anchors
    assert has_anchor(frozenset({"user-content-x"}), "x")
    assert has_anchor(frozenset({"x"}), "user-content-x")
    assert not has_anchor(frozenset({"x"}), "y")
