"""The PostgreSQL backend against a real throwaway cluster (tests/pg.py): selection, errors,
secrets, the same reports as on SQLite, `crawler db copy` both ways."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from crawler.cli import cli
from crawler.db import PgUrl, parse_db, redact
from crawler.errors import ConfigError
from tests.hostfarm import HostFarm
from tests.pg import PASSWORD, PgCluster, free_port
from tests.posts import FAST, moving_post
from tests.procs import wait_for_stopping, wait_while_running
from tests.server import LocalServer

#: Report fields that differ between two runs of the same post whatever the database.
MOMENTS = {"checked_at", "elapsed_ms", "since", "first_failed_at", "generated_at", "started_at"}


def test_cluster_trusts_crawler_and_wants_the_secret_roles_password(pg_cluster: PgCluster) -> None:
    db = pg_cluster.new_database()
    with psycopg.connect(pg_cluster.url(db)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("crawler",)
    with psycopg.connect(pg_cluster.url(db, user="secret", password=PASSWORD)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("secret",)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg_cluster.url(db, user="secret", password="wrong")).close()


# --- selection --------------------------------------------------------------------------------


def test_db_values_select_the_backend() -> None:
    assert parse_db(".crawler/history.sqlite") == Path(".crawler/history.sqlite")
    assert parse_db("sqlite:///rel/h.sqlite") == Path("rel/h.sqlite")
    assert parse_db("sqlite:////abs/h.sqlite") == Path("/abs/h.sqlite")
    assert parse_db("C:/odd/but/a/path") == Path("C:/odd/but/a/path")
    pg = parse_db("postgresql://me:pw@db.example:5433/links")
    assert isinstance(pg, PgUrl)
    assert pg.conninfo == "postgresql://me:pw@db.example:5433/links"
    assert str(pg) == "postgresql://me:***@db.example:5433/links"
    assert isinstance(parse_db("postgres://me@db/links"), PgUrl)
    for bad in (
        "mysql://me@db/links",
        "sqlite://h.sqlite",
        "postgresql:///nohost",
        "postgresql://h:x/d",
    ):
        with pytest.raises(ConfigError):
            parse_db(bad)


def test_redact_hides_passwords_in_the_user_part_and_the_query() -> None:
    assert redact("postgresql://u:p%40ss@h/d") == "postgresql://u:***@h/d"
    assert redact("postgresql://u@h/d?password=x&sslmode=require") == (
        "postgresql://u@h/d?password=***&sslmode=require"
    )
    assert redact("postgresql://u@h:5432/d") == "postgresql://u@h:5432/d"
    assert json.dumps(PgUrl("postgresql://u:p@h/d")) == '"postgresql://u:***@h/d"'
    assert "p@h" not in f"{PgUrl('postgresql://u:p@h/d')!r}"


# --- the same verdicts and reports as on SQLite -----------------------------------------------


def _check(post: Path, db: str, out: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["check", str(post), "--db", db, "--report-dir", str(out), *FAST, *extra]
    )
    assert result.exit_code == 3, (result.output, result.exception)
    return _timeless(json.loads((out / "report.json").read_text(encoding="utf-8")))


def _timeless(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _timeless(v) for k, v in doc.items() if k not in MOMENTS}
    if isinstance(doc, list):
        return [_timeless(v) for v in doc]
    return doc


def test_check_on_postgresql_gives_the_same_reports_as_on_sqlite(
    tmp_path: Path, server: LocalServer, pg_url: str
) -> None:
    post = moving_post(tmp_path, server)
    sqlite = str(tmp_path / "h.sqlite")
    # Twice each: the second run reads the first one's history (previous verdicts, since …).
    first = [_check(post, db, tmp_path / f"{i}-1") for i, db in enumerate((sqlite, pg_url))]
    second = [_check(post, db, tmp_path / f"{i}-2") for i, db in enumerate((sqlite, pg_url))]
    assert first[0] == first[1]
    assert second[0] == second[1]
    verdicts = {r["url"].rsplit("/", 1)[-1]: r["verdict"] for r in second[1]["links"]}
    assert verdicts["removed"] == "dead" and verdicts["verify"] == "blocked"
    assert second[1]["links"][0]["previous_verdict"] == "ok"
    # `crawler report` and `crawler history` read PostgreSQL the same way.
    for db, name in ((sqlite, "s"), (pg_url, "p")):
        result = CliRunner().invoke(
            cli, ["report", "--db", db, "--report-dir", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    reread = [
        _timeless(json.loads((tmp_path / n / "report.json").read_text(encoding="utf-8")))
        for n in "sp"
    ]
    assert reread[0] == reread[1]
    timelines = []
    for db in (sqlite, pg_url):
        result = CliRunner().invoke(
            cli, ["history", server.url("/page/removed"), "--db", db, "--json"]
        )
        assert result.exit_code == 0, result.output
        timelines.append([_timeless(json.loads(line)) for line in result.output.splitlines()])
    assert timelines[0] == timelines[1] and len(timelines[0]) == 2


def _one_check_run(store: Any, url: str, listed: str | None = None, detail: str = "d") -> int:
    """A run of one link with one error check written, through the frontier's own steps."""
    from datetime import UTC, datetime

    from crawler.engine import url_tasks
    from crawler.frontier import Finished
    from crawler.types import Check, Link, Verdict

    link = Link(url=url, line=1, listed_title=listed, section=(), source="p.md")
    run = store.plan_run(datetime.now(UTC), ["p.md"], {}, {"history": True}, url_tasks([link]))
    check = Check(link=link, fetch=None, meta=None, verdict=Verdict.ERROR, reason="x",
                  detail=detail, checked_at=datetime.now(UTC))  # fmt: skip
    assert store.write_finished(run, [Finished(url, ((0, check, Verdict.ERROR),), None)]) == 1
    return int(run)


def test_text_with_nul_is_stored_on_postgresql(pg_url: str) -> None:
    from crawler.db import open_store

    store = open_store(parse_db(pg_url))
    try:
        # (a URL never has one: the post's reader replaces it)
        _one_check_run(store, "http://h/a", listed="t\x00", detail="d\x00")
        got = store.url_history("http://h/a")
        assert [(r.detail, r.listed_title) for r in got] == [("d\ufffd", "t\ufffd")]
    finally:
        store.close()


# --- errors: one line, exit 1, before any request ---------------------------------------------


def _crawler(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    """The CLI as a process (without the suite's CRAWLER_DB unless env gives one)."""
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "CRAWLER_DB"}, **(env or {})},
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", ["closed-port", "no-such-database", "wrong-password"])
def test_unusable_database_is_one_line_before_any_request(
    case: str, tmp_path: Path, server: LocalServer, pg_cluster: PgCluster
) -> None:
    post = tmp_path / "p.md"
    post.write_text(f"{server.url('/page/article')}\n\n语音识别的最新进展\n", encoding="utf-8")
    db = pg_cluster.new_database(owner="secret")
    url, shown = {
        "closed-port": (
            f"postgresql://crawler@127.0.0.1:{free_port()}/x",
            "postgresql://crawler@127.0.0.1:{}/x",
        ),
        "no-such-database": (pg_cluster.url("nope"), pg_cluster.url("nope")),
        "wrong-password": (
            pg_cluster.url(db, user="secret", password="not-" + PASSWORD),
            pg_cluster.url(db, user="secret", password="***"),
        ),
    }[case]
    proc = _crawler("check", str(post), "--db", url, "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    port = url.split(":")[-1].split("/")[0]
    assert lines[0].startswith(
        f"Error: cannot connect to the history database {shown.format(port)}: "
    )
    assert "Traceback" not in proc.stderr and PASSWORD not in proc.stderr
    assert sum(server.hits.values()) == 0
    assert not (tmp_path / "r").exists()


def test_newer_schema_on_postgresql_is_one_line(pg_url: str, tmp_path: Path) -> None:
    store_url = parse_db(pg_url)
    from crawler.db import open_store

    open_store(store_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE crawler_schema SET version = 99")
    proc = _crawler("report", "--db", pg_url, "--report-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"Error: {pg_url} was written by a newer crawler (schema 99); upgrade the tool"
    ]


# --- secrets ----------------------------------------------------------------------------------


def test_password_never_reaches_output_logs_reports_or_config(
    tmp_path: Path, server: LocalServer, pg_cluster: PgCluster
) -> None:
    db = pg_cluster.new_database(owner="secret")
    url = pg_cluster.url(db, user="secret", password=PASSWORD)
    post = moving_post(tmp_path, server)
    out = tmp_path / "reports"
    seen = []
    # the flag, with every log line on
    proc = _crawler("-vv", "check", str(post), "--db", url, "--report-dir", str(out), *FAST)
    assert proc.returncode == 3, proc.stderr
    seen += [proc.stdout, proc.stderr]
    # the environment, and `crawler config`
    proc = _crawler("report", "--report-dir", str(out), env={"CRAWLER_DB": url})
    assert proc.returncode == 0, proc.stderr
    seen += [proc.stdout, proc.stderr]
    proc = _crawler("config", env={"CRAWLER_DB": url}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f'db = "{pg_cluster.url(db, user="secret", password="***")}"  # environment' in (
        proc.stdout
    )
    seen += [proc.stdout, proc.stderr]
    # the configuration file
    (tmp_path / "crawler.toml").write_text(f'db = "{url}"\n', encoding="utf-8")
    proc = _crawler("config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "***" in proc.stdout and "# file" in proc.stdout
    seen += [proc.stdout, proc.stderr]
    proc = _crawler("history", server.url("/page/removed"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen += [proc.stdout, proc.stderr]
    seen += [p.read_text(encoding="utf-8") for p in out.iterdir()]
    assert len(seen) > 10
    assert not [s for s in seen if PASSWORD in s]


# --- crawler db copy --------------------------------------------------------------------------


def _sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    finally:
        conn.close()


def test_db_copy_to_postgresql_and_back_loses_nothing(
    tmp_path: Path, server: LocalServer, pg_url: str
) -> None:
    post = moving_post(tmp_path, server)
    sqlite = tmp_path / "h.sqlite"
    _check(post, str(sqlite), tmp_path / "a")
    before = _check(post, str(sqlite), tmp_path / "b")
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "copy", "--from", str(sqlite), "--to", pg_url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"copied {sqlite} to {pg_url}: 2 runs, 22 checks, ")
    assert "counts match" in result.output
    # The copy reads as the original …
    for db, name in ((str(sqlite), "s"), (pg_url, "p")):
        result = runner.invoke(cli, ["report", "--db", db, "--report-dir", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    reports = [json.loads((tmp_path / n / "report.json").read_text("utf-8")) for n in "sp"]
    assert _timeless(reports[0]) == _timeless(reports[1])
    assert [r["verdict"] for r in reports[1]["links"]] == [r["verdict"] for r in before["links"]]
    # … a copy into a history that is not empty is refused …
    result = runner.invoke(cli, ["db", "copy", "--from", str(sqlite), "--to", pg_url])
    assert result.exit_code == 1 and "already holds a history (2 rows in runs)" in result.output
    # … the next run on it goes on from the copied ids …
    third = _check(post, pg_url, tmp_path / "d")
    assert third["run_id"] == 3
    # … and back to SQLite, every row of every table as it was (plus the third run).
    back = tmp_path / "back.sqlite"
    result = runner.invoke(cli, ["db", "copy", "--from", pg_url, "--to", f"sqlite:///{back}"])
    assert result.exit_code == 0, result.output
    assert "3 runs, 33 checks" in result.output
    orig, copied = _sqlite_rows(sqlite), _sqlite_rows(back)
    assert set(orig) == set(copied)
    assert [r for r in copied["runs"] if r[0] < 3] == orig["runs"]
    assert [r for r in copied["checks"] if r[1] < 3] == orig["checks"]  # (id, run_id, …)
    assert {r[0] for r in copied["url_state"]} == {r[0] for r in orig["url_state"]}


def test_db_copy_refuses_a_missing_source_and_the_same_database(
    tmp_path: Path, pg_url: str
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["db", "copy", "--from", str(tmp_path / "no.sqlite"), "--to", pg_url]
    )
    assert result.exit_code == 1 and "no history at" in result.output
    result = runner.invoke(cli, ["db", "copy", "--from", pg_url, "--to", pg_url])
    assert result.exit_code == 1 and "the same database" in result.output


# --- several processes on one PostgreSQL history ----------------------------------------------


def _held_post(tmp_path: Path, server: LocalServer, name: str, n: int, s: float = 0.2) -> Path:
    urls = [server.url(f"/held?s={s}&post={name}&i={i}") for i in range(n)]
    p = tmp_path / f"{name}.md"
    p.write_text("\n\n".join(f"{u}\n\nslow page" for u in urls) + "\n", encoding="utf-8")
    return p


def _pg_count(url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


def _wait_for_checks(url: str, proc: subprocess.Popen[bytes], at_least: int = 1) -> int:
    stored = [0]

    def enough() -> bool:
        try:
            stored[0] = _pg_count(url, "SELECT count(*) FROM checks")
        except psycopg.Error:
            stored[0] = 0  # the schema is not made yet
        return stored[0] >= at_least

    wait_while_running(proc, enough, f"{at_least} checks were stored")
    return stored[0]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", *args]


def test_two_checks_at_once_on_postgresql_stay_apart(
    tmp_path: Path, server: LocalServer, pg_url: str
) -> None:
    posts = [_held_post(tmp_path, server, name, 12, 0.1) for name in ("a", "b")]
    procs = [
        subprocess.Popen(
            _cli("check", str(p), "--db", pg_url, "--report-dir", str(tmp_path / p.stem), *FAST),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for p in posts
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with psycopg.connect(pg_url) as conn:
        runs = conn.execute("SELECT id, status, sources, counts FROM runs ORDER BY id").fetchall()
        assert [(r[1], json.loads(r[3])["ok"]) for r in runs] == [("complete", 12)] * 2
        for run_id, _, sources, _ in runs:
            name = Path(json.loads(sources)[0]).stem
            urls = [
                r[0] for r in conn.execute("SELECT url FROM checks WHERE run_id = %s", (run_id,))
            ]
            assert len(urls) == 12 and all(f"post={name}&" in u for u in urls)
    for p in posts:
        doc = json.loads((tmp_path / p.stem / "report.json").read_text("utf-8"))
        assert {x["url"] for x in doc["links"]} == {u for u in p.read_text().split() if "://" in u}


def test_kill_9_on_postgresql_marks_the_run_interrupted_next_time(
    tmp_path: Path, server: LocalServer, pg_url: str
) -> None:
    post = _held_post(tmp_path, server, "k", 40, 0.3)
    args = _cli("check", str(post), "--db", pg_url, "--report-dir", str(tmp_path / "r"), *FAST)
    from tests.procs import running_cli

    with running_cli(args) as proc:
        _wait_for_checks(pg_url, proc)
        os.kill(proc.pid, signal.SIGKILL)
    # Another check going on at the same time is not touched …
    other = _held_post(tmp_path, server, "o", 30, 1.0)
    args = _cli("check", str(other), "--db", pg_url, "--report-dir", str(tmp_path / "o"), *FAST)
    with running_cli(args) as proc:
        _wait_for_checks(pg_url, proc, _pg_count(pg_url, "SELECT count(*) FROM checks") + 1)
        small = tmp_path / "small.md"
        small.write_text(f"{server.url('/page/plain')}\n\nPlain page\n", encoding="utf-8")
        r = CliRunner().invoke(
            cli, ["check", str(small), "--db", pg_url, "--report-dir", str(tmp_path / "s"), *FAST]
        )
        assert r.exit_code == 0, r.output
        with psycopg.connect(pg_url) as conn:
            statuses = conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
        # … while the killed one is found dead.
        assert statuses == [(1, "interrupted"), (2, "running"), (3, "complete")]
        proc.communicate(timeout=300)
        assert proc.returncode == 0
    assert _pg_count(pg_url, "SELECT count(*) FROM checks WHERE run_id = 1") >= 1


def test_a_check_goes_on_through_a_restart_of_postgresql(
    tmp_path: Path, server: LocalServer, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.url(pg_cluster.new_database())
    post = _held_post(tmp_path, server, "r", 60, 0.3)
    args = _cli("check", str(post), "--db", url, "--report-dir", str(tmp_path / "r"), "-q", *FAST)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_checks(url, proc)
        pg_cluster.restart()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert b"reconnected to the history database" in err
    assert _pg_count(url, "SELECT count(*) FROM checks") == 60
    assert _pg_count(url, "SELECT count(DISTINCT url) FROM checks") == 60
    assert _pg_count(url, "SELECT count(*) FROM runs WHERE status = 'complete'") == 1


def test_a_store_reconnects_after_the_server_restarts(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:

    from crawler import pgstore
    from crawler.db import open_store
    from crawler.errors import StoreError

    url = pg_cluster.url(pg_cluster.new_database())
    store = open_store(parse_db(url))
    try:
        run = _one_check_run(store, "http://h/a")
        pg_cluster.restart()
        assert [r.verdict for r in store.url_history("http://h/a")] == ["error"]
        # The run's lock is held again: another process does not take the run for dead.
        other = open_store(parse_db(url))
        other.lock()
        info = other.run_info(run)
        other.close()
        assert info is not None and info.status == "running"
        # A server that stays away: one line once the reconnection window is over.
        monkeypatch.setattr(pgstore, "RECONNECT_SECONDS", 0.5)
        pg_cluster.stop()
        try:
            with pytest.raises(StoreError, match=r"^cannot connect to the history database "):
                store.runs()
        finally:
            pg_cluster.start()
    finally:
        store.close()


# --- one run, three processes, 50 hosts -------------------------------------------------------

LINKS, HOSTS = 5000, 50


@pytest.fixture
def farm() -> Iterator[HostFarm]:
    f = HostFarm(HOSTS, delay=0.02).start()
    try:
        yield f
    finally:
        f.stop()


def _farm_post(tmp_path: Path, farm: HostFarm) -> Path:
    urls = list(farm.urls(LINKS // HOSTS))
    p = tmp_path / "farm.md"
    text = "\n\n".join(f"{u}\n\npage /{u.rsplit('/', 1)[1]}" for u in urls)
    p.write_text(text + "\n", encoding="utf-8")
    return p


def _lease_owners(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT lease_owner FROM run_hosts WHERE lease_owner IS NOT NULL")
        return {int(str(r[0]).split(":")[-2]) for r in rows}


def _three_processes(
    tmp_path: Path, farm: HostFarm, url: str, during: Any = None
) -> tuple[list[subprocess.Popen[bytes]], set[int], dict[int, str]]:
    """`check --workers 1` and two `crawler worker --once` on one run; `during(procs, seen)` is
    called while the run goes on. Returns the processes (ended), the lease owners seen and what
    each process said on stderr."""
    post = _farm_post(tmp_path, farm)
    env = {**os.environ, "CRAWLER_LEASE_SECONDS": "3"}
    polite = [
        "--host-concurrency",
        "2",
        "--host-interval",
        "0",
        "--retries",
        "0",
        "--timeout",
        "30",
    ]
    check = subprocess.Popen(
        _cli("check", str(post), "--db", url, "--workers", "1", "--max-concurrency", "16",
             "--report-dir", str(tmp_path / "r"), "-q", *polite),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    procs = [check]
    seen: set[int] = set()
    errs: dict[int, str] = {}
    try:

        def planned() -> bool:
            try:
                return bool(_pg_count(url, "SELECT count(*) FROM run_urls"))
            except psycopg.Error:
                return False

        wait_while_running(check, planned, "the run was planned")  # then the workers join it
        procs += [
            subprocess.Popen(
                _cli("worker", "--db", url, "--once", "--max-concurrency", "16", *polite),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )  # fmt: skip
            for _ in range(2)
        ]
        while check.poll() is None:
            with contextlib.suppress(psycopg.Error):
                seen |= _lease_owners(url)
            if during is not None:
                during(procs, seen)
            with contextlib.suppress(subprocess.TimeoutExpired):
                check.wait(timeout=0.05)  # the next look, or at once when the run ends
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            errs[p.pid] = p.communicate()[1].decode(errors="replace")
    return procs, seen, errs


def _exactly_once(url: str) -> None:
    assert _pg_count(url, "SELECT count(*) FROM checks") == LINKS
    assert _pg_count(url, "SELECT count(DISTINCT url) FROM checks") == LINKS
    assert _pg_count(url, "SELECT count(*) FROM checks WHERE verdict <> 'ok'") == 0
    assert _pg_count(url, "SELECT count(*) FROM runs WHERE status = 'complete'") == 1


def test_three_processes_check_one_run_each_link_once_within_host_limits(
    tmp_path: Path, farm: HostFarm, pg_url: str
) -> None:
    procs, seen, errs = _three_processes(tmp_path, farm, pg_url)
    for p in procs:
        assert p.returncode == 0, errs[p.pid]
    _exactly_once(pg_url)
    assert sorted(farm.hits.values()) == [1] * LINKS  # every page fetched once
    assert max(farm.peaks.values()) <= 2  # per-host limit, across the three processes
    assert {p.pid for p in procs} <= seen, (seen, [p.pid for p in procs])


def test_sigkill_of_a_worker_mid_run_loses_and_doubles_nothing(
    tmp_path: Path, farm: HostFarm, pg_url: str
) -> None:
    killed: list[int] = []

    def kill_a_worker(procs: list[subprocess.Popen[bytes]], seen: set[int]) -> None:
        if not killed and procs[1].pid in seen:  # it holds hosts: kill it mid-work
            os.kill(procs[1].pid, signal.SIGKILL)
            killed.append(procs[1].pid)

    procs, _, errs = _three_processes(tmp_path, farm, pg_url, kill_a_worker)
    assert killed and procs[1].returncode == -signal.SIGKILL
    for p in (procs[0], procs[2]):
        assert p.returncode == 0, errs[p.pid]
    _exactly_once(pg_url)
    assert max(farm.peaks.values()) <= 2


def test_restart_of_postgresql_mid_run_the_processes_reconnect_and_finish(
    tmp_path: Path, farm: HostFarm, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.url(pg_cluster.new_database())
    restarted: list[bool] = []

    def restart(procs: list[subprocess.Popen[bytes]], seen: set[int]) -> None:
        if not restarted and len(seen) >= 3 and _pg_count(url, "SELECT count(*) FROM checks"):
            pg_cluster.restart()
            restarted.append(True)

    procs, _, errs = _three_processes(tmp_path, farm, url, restart)
    assert restarted
    for p in procs:
        assert p.returncode == 0, errs[p.pid]
    _exactly_once(url)


def test_a_worker_with_once_and_nothing_open_ends_at_once_and_a_bad_database_is_one_line(
    pg_url: str,
) -> None:
    proc = _crawler("worker", "--db", pg_url, "--once")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    bad = f"postgresql://crawler@127.0.0.1:{free_port()}/x"
    proc = _crawler("worker", "--db", bad, "--once")
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"Error: cannot connect to the history database {bad}: ")


# --- SIGTERM: the requests in flight finish ---------------------------------------------------


def test_sigterm_on_a_worker_finishes_its_requests_in_flight_and_gives_its_hosts_back(
    tmp_path: Path, pg_url: str
) -> None:
    from datetime import UTC, datetime

    from crawler.engine import RunOptions, plan_run, url_tasks
    from crawler.pgstore import PgStore
    from crawler.types import Link
    from tests.heldserver import HeldServer

    with HeldServer() as a, HeldServer() as b:
        links = [Link(s.url(f"/p/{i}"), i + 1) for s in (a, b) for i in range(5)]
        store = PgStore.open(PgUrl(pg_url))  # plans the run and holds it open, as check does
        try:
            run_id = plan_run(
                store, url_tasks(links), started=datetime.now(UTC), sources=["p.md"],
                digests={}, history=True, options=RunOptions(),
            )  # fmt: skip
            proc = subprocess.Popen(
                _cli("-v", "worker", "--db", pg_url, "--run", str(run_id),
                     "--host-concurrency", "2", "--retries", "0", "--timeout", "60"),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                held = [a.wait_for(2), b.wait_for(2)]  # two requests on each host, held
                proc.send_signal(signal.SIGTERM)
                wait_for_stopping(proc)
                a.release()
                b.release()
                _, err = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            assert proc.returncode == 130, err
            assert b"Traceback" not in err
            in_flight = {s.url(p) for s, paths in zip((a, b), held, strict=True) for p in paths}
            assert [len(a.arrived), len(b.arrived)] == [2, 2]  # nothing started after the signal
            with psycopg.connect(pg_url) as conn:
                rows = conn.execute("SELECT url, verdict FROM checks").fetchall()
                assert sorted(rows) == sorted((u, "ok") for u in in_flight)  # each once
                assert conn.execute(
                    "SELECT count(*) FROM run_hosts WHERE lease_owner IS NOT NULL"
                ).fetchone() == (0,)
                pending = conn.execute("SELECT url FROM run_urls WHERE state = 'pending'")
                left = {link.url for link in links} - in_flight
                assert {r[0] for r in pending.fetchall()} == left
        finally:
            store.close()


# --- check --workers 0: only the workers of other processes -----------------------------------


def test_check_with_workers_0_works_on_nothing_and_reports_what_the_workers_checked(
    tmp_path: Path, pg_url: str
) -> None:
    from tests.heldserver import HeldServer

    with HeldServer() as a, HeldServer() as b:
        urls = [s.url(f"/p/{i}") for s in (a, b) for i in range(3)]
        post = tmp_path / "post.md"
        post.write_text("\n\n".join(f"{u}\n\npage /p/{u[-1]}" for u in urls) + "\n")
        check = subprocess.Popen(
            _cli("check", str(post), "--db", pg_url, "--workers", "0", "--format", "json",
                 "--report-dir", str(tmp_path / "r"), "-q"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        procs = [check]
        try:
            _wait_for_planned(pg_url, check)
            worker = subprocess.Popen(
                _cli("worker", "--db", pg_url, "--once", "--host-concurrency", "1",
                     "--host-interval", "0", "--retries", "0", "--timeout", "60"),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            procs.append(worker)
            a.wait_for(1)  # one request on each host, held: both hosts are leased now
            b.wait_for(1)
            assert _lease_owners(pg_url) == {worker.pid}  # none by check
            a.release()
            b.release()
            _, werr = worker.communicate(timeout=120)
            _, err = check.communicate(timeout=120)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        assert worker.returncode == 0, werr
        assert check.returncode == 0, err
        assert sorted(a.arrived + b.arrived) == sorted(f"/p/{i}" for i in range(3) for _ in "ab")
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["status"] == "complete"
    assert sorted(x["url"] for x in doc["links"]) == sorted(urls)
    assert {x["verdict"] for x in doc["links"]} == {"ok"}
    assert _pg_count(pg_url, "SELECT count(*) FROM checks") == len(urls)


def test_check_with_workers_0_needs_a_history(tmp_path: Path, server: LocalServer) -> None:
    post = tmp_path / "post.md"
    post.write_text(f"{server.url('/page/plain')}\n")
    proc = _crawler("check", str(post), "--no-history", "--workers", "0", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "Error: --workers 0 leaves the run to `crawler worker` processes, which find it in the "
        "history: it needs one (not --no-history)"
    ]
    assert sum(server.hits.values()) == 0  # refused before any request


def _wait_for_planned(url: str, proc: subprocess.Popen[bytes]) -> None:
    def planned() -> bool:
        try:
            return _pg_count(url, "SELECT count(*) FROM run_urls") > 0
        except psycopg.Error:  # the schema is not made yet
            return False

    wait_while_running(proc, planned, "the run was planned")
