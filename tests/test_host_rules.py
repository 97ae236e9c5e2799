"""Per-host settings from the configuration, each observed on the local server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import cli
from tests.server import LocalServer

FAST = ["--host-interval", "0", "--retries", "0", "--backoff", "0", "--timeout", "5"]


def check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, urls: list[str], *extra: str
):  # type: ignore[no-untyped-def]
    (tmp_path / "crawler.toml").write_text(config, encoding="utf-8")
    post = tmp_path / "post.md"
    post.write_text("\n\n".join(f"{u}\n\necho" for u in urls) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["check", str(post), "--format", "json", *FAST, *extra])
    doc = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    return r, doc


def headers_at(server: LocalServer, host: str) -> list[dict[str, str]]:
    return [h for hh, _, h in server.seen_headers if hh.split(":")[0] == host]


def test_cookies_and_headers_go_to_their_host_only_even_across_redirects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    other = server.url("/echo?after-redirect=1", host="localhost")
    config = (
        "[hosts.'127.0.0.1']\n"
        "cookies = { session = 's3cret' }\n"
        "headers = { Authorization = 'Bearer t0ken' }\n"
        "user_agent = 'special-agent'\n"
    )
    urls = [server.url("/echo?direct=1"), server.url(f"/redirect/302?to={other}")]
    r, doc = check(tmp_path, monkeypatch, config, urls)
    assert r.exit_code == 0, r.output
    own = headers_at(server, "127.0.0.1")
    assert own and all(h.get("cookie") == "session=s3cret" for h in own)
    assert all(h.get("authorization") == "Bearer t0ken" for h in own)
    assert all(h.get("user-agent") == "special-agent" for h in own)
    foreign = headers_at(server, "localhost")
    assert len(foreign) == 1
    assert "cookie" not in foreign[0] and "authorization" not in foreign[0]
    assert foreign[0]["user-agent"] != "special-agent"
    # Secrets never reach the reports or the history.
    for path in [tmp_path / "reports" / "report.json", tmp_path / ".crawler"]:
        if path.is_file():
            assert "s3cret" not in path.read_text(encoding="utf-8")
    db = Path(str(tmp_path / "history.sqlite"))
    for p in [db, *tmp_path.glob("**/*.sqlite*")]:
        if p.exists():
            assert b"s3cret" not in p.read_bytes() and b"t0ken" not in p.read_bytes()
    r = CliRunner().invoke(cli, ["config"])
    assert "s3cret" not in r.output and "# cookies: session (values hidden" in r.output


def test_host_concurrency_and_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    config = "[hosts.'127.0.0.1']\nconcurrency = 1\n"
    urls = [server.url(f"/held?s=0.1&h={i}") for i in range(4)]
    r, _ = check(tmp_path, monkeypatch, config, urls, "--host-concurrency", "8")
    assert server.peaks["held"] == 1, r.output
    config = "[hosts.'127.0.0.1']\ninterval = 0.15\n"
    urls = [server.url(f"/page/plain?iv={i}") for i in range(4)]
    t0 = time.monotonic()
    check(tmp_path, monkeypatch, config, urls, "--host-concurrency", "8")
    assert time.monotonic() - t0 >= 0.45


def test_accepted_status_per_host_and_global(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    config = "[hosts.'127.0.0.1']\naccept = [403]\n"
    urls = [server.url("/status/403"), server.url("/status/451", host="localhost")]
    r, doc = check(tmp_path, monkeypatch, config, urls)
    assert [x["verdict"] for x in doc["links"]] == ["ok", "blocked"], r.output
    assert doc["links"][0]["reason"] == "accepted-status"
    r, doc = check(tmp_path, monkeypatch, "", urls, "--accept", "451")
    assert [x["verdict"] for x in doc["links"]] == ["blocked", "ok"]


def test_cookie_jar_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tjarcookie\tfromjar\n",
        encoding="utf-8",
    )
    urls = [server.url("/echo?jar=1"), server.url("/echo?jar=2", host="localhost")]
    r, _ = check(tmp_path, monkeypatch, f"cookie_jar = '{jar}'\n", urls)
    assert r.exit_code == 0, r.output
    assert headers_at(server, "127.0.0.1")[0].get("cookie") == "jarcookie=fromjar"
    assert "cookie" not in headers_at(server, "localhost")[0]


def test_a_cookie_jar_with_a_value_that_is_not_ascii_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    """httpx cannot send it (UnicodeEncodeError mid-run, "a bug"): refused before any request."""
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tnom\tcafé\n",
        encoding="utf-8",
    )
    (tmp_path / "crawler.toml").write_text(f"cookie_jar = '{jar}'\n", encoding="utf-8")
    post = tmp_path / "post.md"
    post.write_text(server.url("/echo?jar=1") + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["check", str(post), *FAST])
    assert r.exit_code == 1, r.output
    (line,) = r.output.strip().splitlines()
    assert str(jar) in line and "'nom'" in line and "must be ASCII" in line
    assert server.hits["/echo?jar=1"] == 0


def test_include_and_exclude_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    urls = [server.url("/page/plain?keep=1"), server.url("/page/plain?skip=1")]
    r, doc = check(tmp_path, monkeypatch, "exclude = ['skip=']\n", urls)
    assert [x["url"] for x in doc["links"]] == [urls[0]]
    assert "(1 excluded)" in r.output
    assert server.hits["/page/plain?skip=1"] == 0
