"""Command line: the only module that prints or exits.

Exit codes: 0 no broken link, 1 the tool failed, 2 usage error (click), 3 dead or error links
found, 4 the network was down (nothing judged), 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from crawler import __version__
from crawler.config import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_CONFIRM_DAYS,
    DEFAULT_CONFIRM_RUNS,
    DEFAULT_DB,
    DEFAULT_HOST_CONCURRENCY,
    DEFAULT_HOST_INTERVAL,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_REPORT_DIR,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_TRANSPORT,
    DEFAULT_USER_AGENT,
    FetchSettings,
)
from crawler.errors import CrawlerError
from crawler.types import BROKEN, Check, Run, Verdict

EXIT_OK = 0
EXIT_TOOL = 1
EXIT_BROKEN = 3
EXIT_NETWORK_DOWN = 4
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

# C0/C1 controls and ANSI escape sequences: fetched text must not drive the terminal.
_TERMINAL_UNSAFE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def safe(text: str | None) -> str:
    """Text fit for the terminal: control characters and escape sequences removed."""
    return _TERMINAL_UNSAFE.sub("", text or "").replace("\n", " ")


def fetch_options(fn: F) -> F:
    """The fetcher's options, shared by every command that fetches (lychee's names)."""
    opts = [
        click.option(
            "--max-concurrency",
            type=click.IntRange(1, 1024),
            default=DEFAULT_MAX_CONCURRENCY,
            show_default=True,
            help="Requests in flight over all hosts.",
        ),
        click.option(
            "--host-concurrency",
            type=click.IntRange(1, 256),
            default=DEFAULT_HOST_CONCURRENCY,
            show_default=True,
            help="Requests in flight to one host.",
        ),
        click.option(
            "--host-interval",
            type=click.FloatRange(0, 60),
            default=DEFAULT_HOST_INTERVAL,
            show_default=True,
            help="Minimum seconds between request starts on one host.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 600),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds for connecting and for each read; one attempt may take 3x this in all.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=DEFAULT_RETRIES,
            show_default=True,
            help="Retries after the first attempt (timeouts, resets, 429, 5xx, anti-robot pages).",
        ),
        click.option(
            "--backoff",
            type=click.FloatRange(0, 300),
            default=DEFAULT_BACKOFF_INITIAL,
            show_default=True,
            help="Base of the exponential backoff between retries, seconds (with full jitter).",
        ),
        click.option(
            "--user-agent",
            default=DEFAULT_USER_AGENT,
            show_default=False,
            help="User-Agent header.",
        ),
        click.option(
            "--max-body",
            type=click.IntRange(1024, 1 << 30),
            default=DEFAULT_MAX_BODY,
            show_default=True,
            help="Bytes of a page read for its title and summary.",
        ),
        click.option(
            "--transport",
            type=click.Choice(["httpx", "aiohttp"]),
            default=DEFAULT_TRANSPORT,
            show_default=True,
            help="HTTP transport under the httpx API (aiohttp needs the 'fast' extra).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _settings(kw: dict[str, Any]) -> FetchSettings:
    return FetchSettings(
        max_concurrency=kw["max_concurrency"],
        host_concurrency=kw["host_concurrency"],
        host_interval=kw["host_interval"],
        timeout=kw["timeout"],
        retries=kw["retries"],
        backoff_initial=kw["backoff"],
        user_agent=kw["user_agent"],
        max_body=kw["max_body"],
        transport=kw["transport"],
    )


class _Group(click.Group):
    """Turns the tool's own errors into one line and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrawlerError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawler")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Check the links of a Markdown post: dead, changed, blocked or alive, with titles."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


class _Progress:
    """A one-line counter on a TTY; plain lines for non-ok links otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, check: Check) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.tty:
            click.echo(f"\r  checked {self.done}/{self.total}", nl=False, err=True)
        elif check.verdict is not Verdict.OK:
            click.echo(
                f"{check.verdict.value:<10} {safe(check.url)}  ({safe(check.reason)})", err=True
            )

    def close(self) -> None:
        if self.tty and not self.quiet:
            click.echo("\r" + " " * 40 + "\r", nl=False, err=True)


def _summary_lines(run: Run, paths: list[Path]) -> list[str]:
    counts = run.counts()
    seconds = (run.finished_at - run.started_at).total_seconds()
    lines = [
        f"{len(run.checks)} references, {len({c.url for c in run.checks})} URLs "
        f"in {seconds:.1f} s: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    ]
    for verdict in (Verdict.DEAD, Verdict.CHANGED, Verdict.ERROR, Verdict.BLOCKED):
        for c in run.checks:
            if c.verdict is verdict:
                lines.append(
                    f"  {verdict.value:<8} line {c.link.line:<4} {safe(c.url)}  "
                    f"{safe(c.detail)[:160]}"
                )
    for p in paths:
        lines.append(f"report: {p}")
    return lines


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration like 90, 90s, 30m, 12h, 2d or 1w."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        m = _DURATION.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a duration like 30m, 12h or 2d", param, ctx)
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def db_option(fn: F) -> F:
    """--db, shared by every command that reads or writes the history."""
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_DB,
        show_default=True,
        envvar="CRAWLER_DB",
        help="The history database (SQLite). Env: CRAWLER_DB.",
    )(fn)


def report_dir_option(fn: F) -> F:
    """--report-dir, shared by check and report."""
    return click.option(
        "--report-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_REPORT_DIR,
        show_default=True,
        help="Where the reports (json, md, html) are written.",
    )(fn)


async def _run_cancellable(coro: Any) -> Any:
    """Run coro; SIGTERM cancels it as Ctrl-C does, so the run is closed cleanly."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


@cli.command()
@click.argument("posts", nargs=-1, required=True, type=click.Path(path_type=Path))
@report_dir_option
@db_option
@click.option("--no-history", is_flag=True, help="Neither read nor write the history database.")
@click.option(
    "--max-age",
    type=Duration(),
    default=None,
    help="Reuse results younger than this (e.g. 12h) instead of fetching; never errors/blocks.",
)
@click.option(
    "--only",
    type=click.Choice(["all", "failing"]),
    default="all",
    show_default=True,
    help="'failing' refetches only the URLs whose last verdict was not ok.",
)
@click.option(
    "--confirm-runs",
    type=click.IntRange(1, 100),
    default=DEFAULT_CONFIRM_RUNS,
    show_default=True,
    help="Failing runs before an uncertain failure (error) counts as dead.",
)
@click.option(
    "--confirm-days",
    type=click.FloatRange(0, 365),
    default=DEFAULT_CONFIRM_DAYS,
    show_default=True,
    help="Days those failing runs must span.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
@fetch_options
def check(
    posts: tuple[Path, ...],
    report_dir: Path,
    db: Path,
    no_history: bool,
    max_age: timedelta | None,
    only: str,
    confirm_runs: int,
    confirm_days: float,
    quiet: bool,
    **kw: Any,
) -> None:
    """Check every link of POSTS, remember the results and write the broken-link reports.

    Example: crawler check links.md --report-dir reports --db .crawler/history.sqlite
    """
    from crawler.history import ConfirmRule
    from crawler.pipeline import RunOptions, check_links
    from crawler.post import read_post
    from crawler.report import DEFAULT_FORMATS, write_reports
    from crawler.store import Store

    settings = _settings(kw)
    links = []
    digests: dict[str, str] = {}
    for post in posts:
        _, found = read_post(post)
        links.extend(found)
        digests[str(post)] = hashlib.sha256(post.read_bytes()).hexdigest()
    store = None if no_history else Store.open(db)
    options = RunOptions(
        max_age=max_age,
        only_failing=only == "failing",
        confirm=ConfirmRule(runs=confirm_runs, days=confirm_days),
    )
    progress = _Progress(len(links), quiet)
    try:
        if store is not None:
            store.lock()
        coro = check_links(
            links,
            settings,
            sources=[str(p) for p in posts],
            digests=digests,
            store=store,
            options=options,
            progress=progress,
        )
        run = asyncio.run(_run_cancellable(coro))
    finally:
        progress.close()
        if store is not None:
            store.close()
    paths = write_reports(run, report_dir, DEFAULT_FORMATS)
    lines = _summary_lines(run, paths)
    click.echo(lines[0])
    if not quiet:
        for line in lines[1:]:
            click.echo(line)
    if run.network_down:
        click.echo(
            "error: the network looks down (no host answered); no link was judged dead.", err=True
        )
        sys.exit(EXIT_NETWORK_DOWN)
    if any(c.verdict in BROKEN for c in run.checks):
        sys.exit(EXIT_BROKEN)


@cli.command()
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: the latest).")
@report_dir_option
@db_option
def report(run_id: int | None, report_dir: Path, db: Path) -> None:
    """Re-render the reports of a past run from the history, without fetching.

    Example: crawler report --run 12 --report-dir /tmp/old-report
    """
    from crawler.report import DEFAULT_FORMATS, write_reports
    from crawler.store import Store

    if not db.exists():
        raise CrawlerError(f"no history at {db}: run 'crawler check' first")
    store = Store.open(db)
    try:
        run = store.load_run(run_id)
    finally:
        store.close()
    paths = write_reports(run, report_dir, DEFAULT_FORMATS)
    click.echo(_summary_lines(run, [])[0] + f" (run {run.run_id})")
    for p in paths:
        click.echo(f"report: {p}")


@cli.command()
@click.argument("url")
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
def history(url: str, db: Path, as_json: bool) -> None:
    """Print the timeline of one URL: every check, oldest first.

    Example: crawler history https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg
    """
    from crawler.store import Store

    if not db.exists():
        raise CrawlerError(f"no history at {db}: run 'crawler check' first")
    store = Store.open(db)
    try:
        rows = store.url_history(url)
    finally:
        store.close()
    if not rows:
        raise CrawlerError(f"{url} has never been checked in {db}")
    last_run = None
    for r in rows:
        if r["run_id"] == last_run:
            continue  # the same URL listed twice in one run
        last_run = r["run_id"]
        if as_json:
            keys = (
                "run_id",
                "checked_at",
                "verdict",
                "raw_verdict",
                "reason",
                "detail",
                "http_status",
                "final_url",
                "title",
                "run_status",
                "network_down",
                "cached",
            )
            click.echo(json.dumps({k: r[k] for k in keys}, ensure_ascii=False))
            continue
        flags = []
        if r["network_down"]:
            flags.append("network down")
        if r["run_status"] != "complete":
            flags.append(r["run_status"])
        if r["cached"]:
            flags.append("cached")
        extra = f" [{', '.join(flags)}]" if flags else ""
        status = r["http_status"] if r["http_status"] is not None else "-"
        click.echo(
            f"{r['checked_at'][:19]}  run {r['run_id']:<4} {r['verdict']:<10} {status!s:<4} "
            f"{safe(r['reason'])}{extra}  {safe(r['title'] or '')[:80]}"
        )


@cli.command()
@click.argument("pages", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--url", default=None, help="The URL the page was saved from (selects site rules).")
def extract(pages: tuple[Path, ...], url: str | None) -> None:
    """Print what the crawler reads from saved HTML pages, one JSON object per line.

    Example: crawler extract saved/article.html
    """
    from crawler.extract import extract_meta

    failed = False
    for page in pages:
        try:
            body = page.read_bytes()
        except OSError as exc:
            failed = True
            click.echo(json.dumps({"file": str(page), "error": exc.strerror or str(exc)}))
            continue
        meta = extract_meta(body, url=url)
        click.echo(
            json.dumps(
                {
                    "file": str(page),
                    "title": meta.title,
                    "summary": meta.summary,
                    "page_kind": meta.kind.value,
                    "notice": meta.notice,
                    "site": meta.site,
                    "site_name": meta.site_name,
                    "canonical_url": meta.canonical_url,
                    "lang": meta.lang,
                },
                ensure_ascii=False,
            )
        )
    if failed:
        sys.exit(EXIT_TOOL)


def main() -> None:
    """Entry point: run the CLI, turning tool errors into one line and an exit code."""
    try:
        rv = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CrawlerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(EXIT_TOOL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
