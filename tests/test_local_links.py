"""Links that are not fetched (local files, site-absolute paths, other schemes), inline ignore
comments, --remap, --header and --max-redirects: the real CLI on files on disk and the local
server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crawler.cli import cli
from crawler.local import Kind, Remap, kind_of
from crawler.post import drop_ignored, parse_post
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "2"]


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _report(out: Path) -> dict[str, dict]:
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {r["url"]: r for r in doc["links"]}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A Jekyll-like site: _posts/ with a post, images/ with one of the two images it cites."""
    (tmp_path / "_posts").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "here.png").write_bytes(b"\x89PNG")
    (tmp_path / "_posts" / "other.md").write_text("# Other\n\n## Usage notes\n", encoding="utf-8")
    (tmp_path / "_posts" / "post.md").write_text(
        "# Post\n\n"
        "![](/images/here.png) ![](/images/gone.png)\n\n"  # line 3
        "[o](other.md) [x](missing.md) [up](../images/here.png)\n\n"  # line 5
        "[m](mailto:me@example.com) [f](ftp://ftp.example.com/x) <a href='git://h/r'>g</a>\n\n"
        "[file](file://" + str(tmp_path / "images" / "here.png") + ")\n",  # line 9
        encoding="utf-8",
    )
    return tmp_path


def test_local_links_checked_on_disk(site: Path) -> None:
    out = site / "r"
    r = _run("check", str(site / "_posts"), "--root-dir", str(site), "--report-dir", str(out))
    assert r.exit_code == 3, r.output
    got = {u: (v["verdict"], v["reason"], v["line"]) for u, v in _report(out).items()}
    assert got["/images/here.png"] == ("ok", "file-exists", 3)
    assert got["/images/gone.png"] == ("dead", "missing-file", 3)
    assert got["other.md"] == ("ok", "file-exists", 5)
    assert got["missing.md"] == ("dead", "missing-file", 5)
    assert got["../images/here.png"] == ("ok", "file-exists", 5)
    assert got[f"file://{site}/images/here.png"] == ("ok", "file-exists", 9)
    for url in ("mailto:me@example.com", "ftp://ftp.example.com/x", "git://h/r"):
        assert got[url][:2] == ("skipped", "scheme"), url
    assert "2 dead" in r.output and "3 skipped" in r.output
    assert "missing.md" in r.output  # listed among the dead on the terminal


def test_site_absolute_links_without_root_dir_are_skipped_and_counted(site: Path) -> None:
    out = site / "r"
    r = _run("check", str(site / "_posts" / "post.md"), "--report-dir", str(out), "--offline")
    assert r.exit_code == 3, r.output  # missing.md is still dead
    got = _report(out)
    assert got["/images/gone.png"]["verdict"] == "skipped"
    assert got["/images/gone.png"]["reason"] == "no-root-dir"
    assert "5 skipped" in r.stdout.splitlines()[0]
    assert "excluded" not in r.stdout.splitlines()[0]  # skipped, not also counted as excluded


def test_links_lists_every_kind(site: Path) -> None:
    r = _run("links", str(site / "_posts" / "post.md"))
    rows = [json.loads(line) for line in r.output.splitlines()]
    kinds = {row["url"]: row["kind"] for row in rows}
    assert kinds["/images/gone.png"] == "site"
    assert kinds["mailto:me@example.com"] == "scheme"
    assert kinds["other.md"] == "local"
    assert kinds[f"file://{site}/images/here.png"] == "file"
    assert len(rows) == 9


def test_offline_fetches_nothing_and_writes_no_history(
    site: Path, server: LocalServer, history_db: Path
) -> None:
    post = site / "_posts" / "web.md"
    post.write_text(f"{server.url('/status/404')}\n\n[o](other.md)\n", encoding="utf-8")
    out = site / "r"
    r = _run("check", str(post), "--offline", "--report-dir", str(out), *FAST)
    assert r.exit_code == 0, r.output
    assert server.hits == {}
    assert not history_db.exists()
    assert list(_report(out)) == ["other.md"]
    assert "(1 excluded)" in r.output


def test_kind_of() -> None:
    assert kind_of("HTTPS://x.org") is Kind.WEB
    assert kind_of("C:\\notes\\a.md") is Kind.LOCAL
    assert kind_of("//cdn.example.com/x.js") is Kind.SCHEME
    assert kind_of("#part") is Kind.LOCAL
    assert kind_of("/a/b") is Kind.SITE


# --- inline ignores ----------------------------------------------------------------------------


def test_inline_ignore_comments() -> None:
    text = (
        "See <!-- crawler-ignore --> [a](https://a.example/) and [b](https://b.example/).\n\n"
        "<!-- crawler-ignore -->\n"
        "[c](https://c.example/) [d](https://d.example/)\n\n"
        "[e](https://e.example/) [f](https://f.example/) <!-- crawler-ignore-line -->\n\n"
        "<!-- crawler-ignore-start -->\n\n"
        "[g](https://g.example/)\n\nhttps://h.example/\n\n"
        "<!-- crawler-ignore-end -->\n\n"
        "[i](https://i.example/)\n"
    )
    links = parse_post(text, "p.md")
    kept, dropped = drop_ignored(text, links)
    assert [k.url[8] for k in kept] == ["b", "d", "i"]
    assert dropped == 6


def test_ignored_links_count_as_excluded(tmp_path: Path, server: LocalServer) -> None:
    post = tmp_path / "p.md"
    post.write_text(
        f"[a]({server.url('/status/404')}) <!-- crawler-ignore-line -->\n\n"
        f"[b]({server.url('/page/article')})\n",
        encoding="utf-8",
    )
    r = _run("check", str(post), "--no-history", "--report-dir", str(tmp_path / "r"), *FAST)
    assert r.exit_code == 0, r.output
    assert "(1 excluded)" in r.stdout.splitlines()[0]
    assert server.hits["/status/404"] == 0


# --- --remap, --header, --max-redirects --------------------------------------------------------


def test_remap_rewrites_urls_before_checking(site: Path, server: LocalServer) -> None:
    post = site / "_posts" / "remap.md"
    post.write_text(
        "[p](/ml/2016/08/02/Other.html) [w](https://example.invalid/status/404)\n",
        encoding="utf-8",
    )
    out = site / "r"
    r = _run(
        "check", str(post), "--no-history", "--report-dir", str(out), *FAST,
        "--remap", r"^/ml/\d+/\d+/\d+/(\w+)\.html$ _posts/$1.md",
        "--remap", "^https://example.invalid/ " + server.url("/"),
        "--root-dir", str(site),
    )  # fmt: skip
    assert r.exit_code == 3, r.output
    got = _report(out)
    assert got["_posts/Other.md"]["verdict"] == "dead"  # no _posts/Other.md, but other.md
    assert got[server.url("/status/404")]["reason"] == "http-404"
    links = _run("links", str(post), "--remap", "^/ml/.* /x.png")
    assert json.loads(links.output.splitlines()[0])["url"] == "/x.png"


def test_remap_from_the_config_file_and_bad_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Remap.parse("^a(b) c$1").replacement == "c\\g<1>"
    with pytest.raises(ValueError, match="no group 2"):
        Remap.parse("^a(b) $2")
    monkeypatch.chdir(tmp_path)
    post = tmp_path / "p.md"
    post.write_text("[x](/old/a.png)\n", encoding="utf-8")
    (tmp_path / "crawler.toml").write_text('remap = ["^/old/ /new/"]\n', encoding="utf-8")
    r = _run("links", str(post))
    assert json.loads(r.output)["url"] == "/new/a.png"
    (tmp_path / "crawler.toml").write_text('remap = ["(unclosed x"]\n', encoding="utf-8")
    r = CliRunner().invoke(cli, ["links", str(post)])
    assert r.exit_code == 1
    assert "remap" in r.output and "Traceback" not in r.output
    (tmp_path / "crawler.toml").unlink()
    r = CliRunner().invoke(cli, ["links", str(post), "--remap", "lonely"])
    assert r.exit_code == 1 and "REGEX REPLACEMENT" in r.output


def test_header_goes_to_every_host_and_host_rules_win(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crawler.toml").write_text(
        "[hosts.localhost]\nheaders = { X-Token = 'host-own' }\n", encoding="utf-8"
    )
    post = tmp_path / "p.md"
    post.write_text(
        f"{server.url('/echo?a')}\n\n{server.url('/echo?b', host='localhost')}\n",
        encoding="utf-8",
    )
    r = _run(
        "check", str(post), "--no-history", "--format", "json", *FAST,
        "--header", "X-Token: all", "--header", "Authorization: Bearer abc",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    seen = {path: h for _, path, h in server.seen_headers}
    assert seen["/echo?a"]["x-token"] == "all"
    assert seen["/echo?a"]["authorization"] == "Bearer abc"
    assert seen["/echo?b"]["x-token"] == "host-own"
    assert seen["/echo?b"]["authorization"] == "Bearer abc"
    bad = CliRunner().invoke(cli, ["check", str(post), "--header", "no colon"])
    assert bad.exit_code == 1 and "Name: value" in bad.output


def test_max_redirects(tmp_path: Path, server: LocalServer) -> None:
    post = tmp_path / "p.md"
    post.write_text(f"{server.url('/chain/3')}\n", encoding="utf-8")
    out = tmp_path / "r"
    base = ["check", str(post), "--no-history", "--format", "json", "--report-dir", str(out)]
    r = _run(*base, *FAST, "--max-redirects", "2", "--fail-on", "dead,error")
    assert r.exit_code == 3, r.output
    (rec,) = _report(out).values()
    assert (rec["verdict"], rec["reason"]) == ("error", "too-many-redirects")
    r = _run(*base, *FAST, "--max-redirects", "3")
    assert r.exit_code == 0, r.output


def test_tex_that_reads_as_a_link_is_not_one() -> None:
    text = "$f[a](x,y)$ and $[0,1](C)$ but [r](README) [n](notes.md) [s](sub/) [h](#top)\n"
    assert [link.url for link in parse_post(text, "p.md", every=True)] == [
        "notes.md",
        "sub/",
        "#top",
    ]


def test_config_shows_remap_and_hides_header_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crawler.toml").write_text(
        'remap = ["^/old/ /new/"]\nheader = ["Authorization: Bearer s3cret"]\n'
        'root_dir = "."\ninclude_fragments = true\noffline = true\n',
        encoding="utf-8",
    )
    r = CliRunner().invoke(cli, ["config"])
    assert r.exit_code == 0, r.output
    assert 'remap = ["^/old/ /new/"]  # file' in r.output
    assert 'header = ["Authorization: (value hidden)"]  # file' in r.output
    assert "s3cret" not in r.output
    assert "include_fragments = true  # file" in r.output
