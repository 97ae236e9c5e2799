"""Configuration: discovery, precedence, validation; inputs: files, folders, globs, stdin."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.config import HostRule, host_rule
from crawler.configfile import find_config, load_config
from crawler.errors import ConfigError
from tests.server import LocalServer


def run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, **kw: object):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(cli, args, **kw)  # type: ignore[arg-type]


def config_lines(output: str) -> dict[str, str]:
    out = {}
    for line in output.splitlines():
        if line.startswith("["):
            break  # the top-level settings end at the first table
        if " = " in line and not line.startswith("#"):
            key, rest = line.split(" = ", 1)
            out[key] = rest
    return out


def test_discovery_walks_upward_and_prefers_crawler_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.crawler]\ntimeout = 3\n", encoding="utf-8")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) == tmp_path / "pyproject.toml"
    (tmp_path / "a" / "crawler.toml").write_text("timeout = 4\n", encoding="utf-8")
    assert find_config(deep) == tmp_path / "a" / "crawler.toml"


def test_pyproject_without_tool_crawler_is_not_a_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    assert find_config(tmp_path) is None or find_config(tmp_path) != tmp_path / "pyproject.toml"


def test_precedence_flag_over_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crawler.toml").write_text(
        "timeout = 3\nretries = 4\nhost_interval = 0.5\n", encoding="utf-8"
    )
    monkeypatch.setenv("CRAWLER_RETRIES", "5")
    monkeypatch.setenv("CRAWLER_HOST_INTERVAL", "0.7")
    r = run(["config"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    lines = config_lines(r.output)
    assert lines["timeout"] == "3.0  # file"
    assert lines["retries"] == "5  # environment"
    assert lines["host_interval"] == "0.7  # environment"
    assert lines["max_concurrency"].endswith("# default")
    assert str(tmp_path / "crawler.toml") in r.output


def test_flag_wins_over_env_and_file_observed_on_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    (tmp_path / "crawler.toml").write_text(
        "timeout = 0.2\nretries = 0\nhost_interval = 0\n", encoding="utf-8"
    )
    post = tmp_path / "p.md"
    post.write_text(f"{server.url('/slow?s=0.6&cfg=1')}\n\nslow page\n", encoding="utf-8")
    r = run(["check", str(post), "--format", "json"], tmp_path, monkeypatch)
    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    assert doc["links"][0]["reason"] == "timeout", r.output  # the file's 0.2 s applied
    monkeypatch.setenv("CRAWLER_TIMEOUT", "0.3")
    r = run(["check", str(post), "--format", "json"], tmp_path, monkeypatch)
    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    assert doc["links"][0]["reason"] == "timeout", r.output  # the environment's 0.3 s
    r = run(["check", str(post), "--format", "json", "--timeout", "5"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    assert doc["links"][0]["verdict"] == "ok"  # the flag's 5 s
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["report.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "colour: unknown setting"),
        ("timeout = 'fast'\n", "timeout: expected a number of seconds from 0.1 to 600, got 'fast'"),
        ("retries = 2.5\n", "retries: expected an integer from 0 to 10, got 2.5"),
        ("workers = true\n", 'workers: expected "auto" or an integer from 0 to 64, got true'),
        ('format = "xml"\n', "format: expected some of json, md, html"),
        ("no_private = 1\n", "no_private: expected true or false, got 1"),
        ("accept = ['403']\n", "accept: expected HTTP status codes"),
        ("retries = 99\n", "retries:"),
        ("exclude = ['(unclosed']\n", "bad regular expression"),
        ("[hosts.'www.zhihu.com']\ncookie = 'x'\n", "hosts.www.zhihu.com.cookie: unknown key"),
        ("[hosts.'a.com']\nconcurrency = 0\n", "expected an integer ≥ 1"),
        ("[hosts.'a.com']\nheaders = {X = 1}\n", "headers.X: expected a string"),
        # what goes into a request must be ASCII: httpx failed the run on it ("a bug")
        ("[hosts.'a.com']\nheaders = {X = 'café'}\n", "headers.X: the value must be ASCII"),
        ("[hosts.'a.com']\nheaders = {'Nämé' = 'x'}\n", "headers.Nämé: a name must be ASCII"),
        ("[hosts.'a.com']\ncookies = {n = 'café'}\n", "cookies.n: the value must be ASCII"),
        ("[hosts.'a.com']\nuser_agent = 'agent-é'\n", "user_agent: expected an ASCII string"),
        ("user_agent = 'agent-é'\n", "user_agent: expected a non-empty ASCII string"),
        ("timeout = \n", "invalid TOML"),
    ],
)
def test_validation_is_one_line_naming_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    cfg = tmp_path / "crawler.toml"
    cfg.write_text(text, encoding="utf-8")
    post = tmp_path / "p.md"
    post.write_text("http://127.0.0.1:9/never-fetched\n", encoding="utf-8")
    r = run(["check", str(post)], tmp_path, monkeypatch)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1
    assert str(cfg) in lines[0] and message in lines[0]
    assert not (tmp_path / "reports").exists()  # failed before any network traffic


def test_crawlerignore_and_host_rules(tmp_path: Path) -> None:
    (tmp_path / "crawler.toml").write_text(
        "[hosts.'zhihu.com']\ncookies = {z_c0 = 'secret'}\naccept = [403]\n"
        "[hosts.'www.zhihu.com']\nuser_agent = 'UA'\n",
        encoding="utf-8",
    )
    (tmp_path / ".crawlerignore").write_text("# known bad\nexample\\.org\n\n", encoding="utf-8")
    fc = load_config(tmp_path / "crawler.toml")
    assert [p.pattern for p in fc.exclude] == ["example\\.org"]
    rule = host_rule(fc.hosts, "zhuanlan.zhihu.com")
    assert rule is not None and rule.cookies == {"z_c0": "secret"} and rule.accept == {403}
    www = host_rule(fc.hosts, "www.zhihu.com")
    assert www is not None and www.user_agent == "UA"  # the most specific entry wins
    assert host_rule(fc.hosts, "notzhihu.com") is None
    assert host_rule({"a.com": HostRule()}, "A.COM.") is not None


def test_missing_config_file_given_explicitly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")


def test_links_lists_every_occurrence_across_files_folders_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blog = tmp_path / "blog"
    (blog / "sub").mkdir(parents=True)
    (blog / "a.md").write_text("# A\n\nhttps://x.example/1\n\nOne\n", encoding="utf-8")
    (blog / "sub" / "b.markdown").write_text(
        "# B\n\nhttps://x.example/1\n\nOne again\n\nhttps://x.example/2\n\nTwo\n", encoding="utf-8"
    )
    (blog / "image.png").write_bytes(b"\x89PNG")
    r = run(["links", str(blog), "-"], tmp_path, monkeypatch, input="see https://x.example/3\n")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.output.splitlines()]
    assert [(Path(x["file"]).name, x["url"], x["line"]) for x in recs] == [
        ("a.md", "https://x.example/1", 3),
        ("b.markdown", "https://x.example/1", 3),
        ("b.markdown", "https://x.example/2", 7),
        ("-", "https://x.example/3", 1),
    ]
    assert recs[0]["section"] == "A" and recs[0]["listed_title"] == "One"


def test_links_glob_and_exclude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(
            f"https://x.example/{name}\n\nT\n\nhttps://skip.example/\n", encoding="utf-8"
        )
    r = run(["links", "*.md", "--exclude", r"skip\.example"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    urls = [json.loads(line)["url"] for line in r.output.splitlines()]
    assert urls == ["https://x.example/a.md", "https://x.example/b.md"]


def test_glob_matching_nothing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run(["links", "nothing-*.md"], tmp_path, monkeypatch)
    assert r.exit_code == 1 and "no file matches" in r.output


def test_version_and_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run(["--version"], tmp_path, monkeypatch)
    assert r.exit_code == 0 and "crawler, version" in r.output
    for cmd in ("check", "links", "config", "report", "history", "extract"):
        r = run([cmd, "--help"], tmp_path, monkeypatch)
        assert r.exit_code == 0 and "Example:" in r.output, cmd


def test_format_key_in_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "crawler.toml").write_text('format = "json"\n', encoding="utf-8")
    r = run(["config"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    assert config_lines(r.output)["format"] == '"json"  # file'


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        (
            {"CRAWLER_TIMEOUT": "abc"},
            [],
            "CRAWLER_TIMEOUT (environment): expected a number of seconds from 0.1 to 600, "
            "got 'abc'",
        ),
        ({"CRAWLER_RETRIES": "2.5"}, [], "CRAWLER_RETRIES (environment): expected an integer"),
        ({"CRAWLER_NO_PRIVATE": "maybe"}, [], "CRAWLER_NO_PRIVATE (environment): expected true"),
        ({"CRAWLER_FORMAT": "xml"}, [], "CRAWLER_FORMAT (environment): expected some of json"),
        # the options whose types are written for click (issue 13): the variable is named, not
        # a flag nobody typed, and it is the tool's error (exit 1), not a usage error
        (
            {"CRAWLER_FAIL_ON": "dead,gone"},
            [],
            "CRAWLER_FAIL_ON (environment): 'gone' is not a verdict that can fail a run",
        ),
        (
            {"CRAWLER_MAX_REDIRECTS": "101"},
            [],
            "CRAWLER_MAX_REDIRECTS (environment): expected an integer from 0 to 100, got '101'",
        ),
        (
            {"CRAWLER_DB": "mysql://me@db/links"},
            [],
            "CRAWLER_DB (environment): mysql://me@db/links: unknown database scheme 'mysql'",
        ),
        (
            {},
            ["--max-redirects", "-1"],
            "--max-redirects: expected an integer from 0 to 100, got '-1'",
        ),
        (
            {},
            ["--timeout", "0"],
            "--timeout: expected a number of seconds from 0.1 to 600, got '0'",
        ),
        (
            {},
            ["--workers", "1.5"],
            "--workers: expected \"auto\" or an integer from 0 to 64, got '1.5'",
        ),
        ({}, ["--accept", "4O3"], "--accept: expected HTTP status codes"),
        ({}, ["--format", "xml"], "--format: expected some of json, md, html"),
        ({}, ["--user-agent", "agent-é"], "--user-agent: expected a non-empty ASCII string"),
    ],
)
def test_a_bad_value_from_any_source_is_one_line_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    """Flags, environment variables and the file share one validator and one error form."""
    post = tmp_path / "p.md"
    post.write_text("http://127.0.0.1:9/never-fetched\n", encoding="utf-8")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for cmd in (["check", str(post), *args], ["config", *args]):
        if cmd[0] == "config" and args:
            continue  # crawler config has no fetch flags
        r = run(cmd, tmp_path, monkeypatch)
        assert r.exit_code == 1, r.output
        lines = r.output.strip().splitlines()
        assert lines == [f"Error: {message}"] or (len(lines) == 1 and message in lines[0])
        assert "float range" not in r.output and "Usage" not in r.output
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("flag", "file_line", "message"),
    [
        ("--fail-on=dead,gone", 'fail_on = "dead,gone"', "'gone' is not a verdict"),
        ("--header=no colon", 'header = ["no colon"]', "is not a header like 'Name: value'"),
        ("--header=X-A: café", 'header = ["X-A: café"]', "a header's value must be ASCII"),
        ("--remap=lonely", 'remap = ["lonely"]', "REGEX REPLACEMENT"),
    ],
)
def test_click_typed_options_blame_the_flag_or_the_file_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, file_line: str, message: str
) -> None:
    """A bad flag is one line naming the flag, the same value in the file one line naming the
    file and its key: exit 1 both (a bad flag value was click's usage error, exit 2)."""
    post = tmp_path / "p.md"
    post.write_text("http://127.0.0.1:9/never-fetched\n", encoding="utf-8")
    r = run(["check", str(post), flag], tmp_path, monkeypatch)
    assert r.exit_code == 1, r.output
    (line,) = r.output.strip().splitlines()
    assert line.startswith(f"Error: {flag.split('=')[0]}: ") and message in line
    (tmp_path / "crawler.toml").write_text(file_line + "\n", encoding="utf-8")
    r = run(["check", str(post)], tmp_path, monkeypatch)
    assert r.exit_code == 1, r.output
    (line,) = r.output.strip().splitlines()
    key = file_line.split(" = ")[0]
    assert line.startswith(f"Error: {tmp_path / 'crawler.toml'}: {key}: ") and message in line
    assert not (tmp_path / "reports").exists()


def test_config_output_is_a_config_file_that_reads_back_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first"
    first.mkdir()
    (first / "cookies.txt").write_text("# Netscape HTTP Cookie File\n", encoding="utf-8")
    (first / "crawler.toml").write_text(
        "retries = 4\nformat = ['json', 'md']\naccept = [403, 999]\nmax_age = '12h'\n"
        "remap = ['^http://old/ https://new/']\n"
        f"cookie_jar = {json.dumps(str(first / 'cookies.txt'))}\n"
        "include = ['^https?://', 'quote\"d']\nexclude = ['example\\\\.org']\n"
        "[hosts.'zhihu.com']\naccept = [403]\ninterval = 0.5\nuser_agent = 'UA \"x\"'\n"
        "cookies = {z_c0 = 'secret-value'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CRAWLER_TIMEOUT", "3.5")
    r = run(["config"], first, monkeypatch)
    assert r.exit_code == 0, r.output
    assert "secret-value" not in r.output and "= null" not in r.output
    second = tmp_path / "second"
    second.mkdir()
    (second / "crawler.toml").write_text(r.output, encoding="utf-8")
    monkeypatch.delenv("CRAWLER_TIMEOUT")
    again = run(["config"], second, monkeypatch)
    assert again.exit_code == 0, again.output

    def settings(output: str) -> dict[str, str]:
        return {k: v.split("  # ")[0] for k, v in config_lines(output).items()}

    assert settings(again.output) == settings(r.output)
    lines = config_lines(r.output)
    assert lines["format"].startswith('"json,md"') and lines["accept"].startswith("[403, 999]")
    assert lines["timeout"] == "3.5  # environment" and lines["max_age"].startswith('"12h"')
    assert lines["remap"].startswith('["^http://old/ https://new/"]')
    reread = load_config(second / "crawler.toml")
    first_cfg = load_config(first / "crawler.toml")
    assert reread.include == first_cfg.include and reread.exclude == first_cfg.exclude
    rule = reread.hosts["zhihu.com"]
    assert (rule.accept, rule.interval, rule.user_agent) == ({403}, 0.5, 'UA "x"')


def test_verbose_and_config_work_after_the_command_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "other.toml").write_text("retries = 7\n", encoding="utf-8")
    for args in (["--config", "other.toml", "config"], ["config", "--config", "other.toml"]):
        r = run(args, tmp_path, monkeypatch)
        assert r.exit_code == 0, r.output
        assert config_lines(r.output)["retries"] == "7  # file", args
    r = run(["links", "nothing-*.md", "--config", "missing.toml", "-v"], tmp_path, monkeypatch)
    assert r.exit_code == 1 and "missing.toml: no such configuration file" in r.output
    post = tmp_path / "p.md"
    post.write_text("see https://example.invalid/x\n", encoding="utf-8")
    r = run(["links", str(post), "-vv"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output


def test_verbose_raises_the_crawlers_loggers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-vv is the crawler's debug output, not markdown-it's (which logs every block rule it tries),
    and an in-process run leaves the root logger as it found it."""
    import logging
    import subprocess
    import sys

    post = tmp_path / "p.md"
    post.write_text("# T\n\n- item [a](https://example.invalid/a)\n- two\n", encoding="utf-8")
    root_level = logging.getLogger().level
    r = run(["links", str(post), "-vv"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    assert logging.getLogger().level == root_level
    p = subprocess.run(
        [sys.executable, "-m", "crawler", "-vv", "links", str(post)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "https://example.invalid/a" in p.stdout
    assert "markdown_it" not in p.stderr


def test_the_readme_example_config_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "crawler.toml").write_text(example, encoding="utf-8")
    (tmp_path / "cookies.txt").write_text("# Netscape HTTP Cookie File\n", encoding="utf-8")
    r = run(["config"], tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    workers = tomllib.loads(example)["workers"]
    assert config_lines(r.output)["workers"] == f"{json.dumps(workers)}  # file"
