"""Command line: the only module that prints or exits.

Exit codes: 0 no broken link, 1 the tool failed, 2 usage error (click), 3 links with a
--fail-on verdict found (default: dead), 4 the network was down (nothing judged), 130
interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from crawler import __version__
from crawler import settings as st
from crawler.config import (
    ALL_FORMATS,
    DEFAULT_ARCHIVE_ENDPOINT,
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_CONFIRM_DAYS,
    DEFAULT_CONFIRM_RUNS,
    DEFAULT_DB,
    DEFAULT_FAIL_ON,
    DEFAULT_FORMATS,
    DEFAULT_HOST_CONCURRENCY,
    DEFAULT_HOST_INTERVAL,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_REPORT_DIR,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_TRANSPORT,
    DEFAULT_USER_AGENT,
    FAIL_ON_CHOICES,
    FetchSettings,
)
from crawler.configfile import FileConfig, find_config, load_config
from crawler.errors import ConfigError, CrawlerError, NetworkDownError
from crawler.terminal import safe as safe
from crawler.types import Link, Run, Verdict

EXIT_OK = 0
EXIT_TOOL = 1
EXIT_BROKEN = 3
EXIT_NETWORK_DOWN = 4
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class HeaderParam(click.ParamType):  # type: ignore[type-arg]
    """A request header written 'Name: value'."""

    name = "header"
    _NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, sep, val = str(value).partition(":")
        name, val = name.strip(), val.strip()
        if not sep or not self._NAME.match(name) or any(c in val for c in "\r\n\x00"):
            self.fail(f"{value!r} is not a header like 'Name: value'", param, ctx)
        return (name, val)


def fetch_options(fn: F) -> F:
    """The fetcher's options, shared by every command that fetches (lychee's names)."""
    opts = [
        click.option(
            "--max-concurrency",
            envvar="CRAWLER_MAX_CONCURRENCY",
            type=st.Int(1, 1024),
            default=DEFAULT_MAX_CONCURRENCY,
            show_default=True,
            help="Requests in flight over all hosts.",
        ),
        click.option(
            "--host-concurrency",
            envvar="CRAWLER_HOST_CONCURRENCY",
            type=st.Int(1, 256),
            default=DEFAULT_HOST_CONCURRENCY,
            show_default=True,
            help="Requests in flight to one host.",
        ),
        click.option(
            "--host-interval",
            envvar="CRAWLER_HOST_INTERVAL",
            type=st.Number(0, 60, "seconds"),
            default=DEFAULT_HOST_INTERVAL,
            show_default=True,
            help="Minimum seconds between request starts on one host.",
        ),
        click.option(
            "--timeout",
            envvar="CRAWLER_TIMEOUT",
            type=st.Number(0.1, 600, "seconds"),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds for connecting and for each read; one attempt may take 3x this in all.",
        ),
        click.option(
            "--retries",
            envvar="CRAWLER_RETRIES",
            type=st.Int(0, 10),
            default=DEFAULT_RETRIES,
            show_default=True,
            help="Retries after the first attempt (timeouts, resets, 429, 5xx, anti-robot pages).",
        ),
        click.option(
            "--backoff",
            envvar="CRAWLER_BACKOFF",
            type=st.Number(0, 300, "seconds"),
            default=DEFAULT_BACKOFF_INITIAL,
            show_default=True,
            help="Base of the exponential backoff between retries, seconds (with full jitter).",
        ),
        click.option(
            "--user-agent",
            envvar="CRAWLER_USER_AGENT",
            type=st.Text(),
            default=DEFAULT_USER_AGENT,
            show_default=False,
            help="User-Agent header.",
        ),
        click.option(
            "--max-body",
            envvar="CRAWLER_MAX_BODY",
            type=st.Int(1024, 1 << 30),
            default=DEFAULT_MAX_BODY,
            show_default=True,
            help="Bytes of a page read for its title and summary.",
        ),
        click.option(
            "--accept",
            envvar="CRAWLER_ACCEPT",
            type=st.Statuses(),
            default="",
            help="Extra HTTP statuses that count as alive, comma-separated (e.g. 403,999).",
        ),
        click.option(
            "--cookie-jar",
            envvar="CRAWLER_COOKIE_JAR",
            type=st.FilePath(must_exist=True),
            default=None,
            help="A Netscape cookies.txt file; each cookie goes only to its own domain.",
        ),
        click.option(
            "--transport",
            envvar="CRAWLER_TRANSPORT",
            type=st.Choice("httpx", "aiohttp"),
            default=DEFAULT_TRANSPORT,
            show_default=True,
            help="HTTP transport under the httpx API: aiohttp's pool (fast) or httpx's own.",
        ),
        click.option(
            "--no-private",
            envvar="CRAWLER_NO_PRIVATE",
            type=st.Bool(),
            is_flag=True,
            default=False,
            help="Exclude links to loopback, private, link-local or cloud metadata addresses "
            "(as lychee's --exclude-private) and never connect to one, at any redirect.",
        ),
        click.option(
            "--header",
            "header",
            multiple=True,
            type=HeaderParam(),
            help="A request header for every host, 'Name: value' (repeatable; a host's own "
            "headers go in [hosts] of the configuration file).",
        ),
        click.option(
            "--max-redirects",
            envvar="CRAWLER_MAX_REDIRECTS",
            type=click.IntRange(0, 100),
            default=DEFAULT_MAX_REDIRECTS,
            show_default=True,
            help="Redirects followed before a link counts as an error (too-many-redirects).",
        ),
        click.option(
            "--workers",
            envvar="CRAWLER_WORKERS",
            type=st.Int(0, 64),
            default=0,
            show_default=True,
            help="Worker processes, each leasing hosts from the history; 0 = one per core for "
            "lists of 1,000 URLs or more, in-process for shorter ones.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _settings(kw: dict[str, Any]) -> FetchSettings:
    ctx = click.get_current_context(silent=True)
    fc = ctx.find_object(FileConfig) if ctx else None
    return FetchSettings(
        hosts=fc.hosts if fc else {},
        accept=kw["accept"],
        cookie_jar=str(kw["cookie_jar"]) if kw["cookie_jar"] else None,
        max_concurrency=kw["max_concurrency"],
        host_concurrency=kw["host_concurrency"],
        host_interval=kw["host_interval"],
        timeout=kw["timeout"],
        retries=kw["retries"],
        backoff_initial=kw["backoff"],
        user_agent=kw["user_agent"],
        max_body=kw["max_body"],
        transport=kw["transport"],
        no_private=kw["no_private"],
        workers=kw["workers"],
        headers=dict(kw.get("header") or ()),
        max_redirects=kw.get("max_redirects", DEFAULT_MAX_REDIRECTS),
    )


class _ToolError(click.ClickException):
    """A CrawlerError as Click shows it: one line, the error's own exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


class _Group(click.Group):
    """Turns the tool's own errors into one line and their exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrawlerError as exc:
            raise _ToolError(str(exc), exc.exit_code) from exc


_CONFIG_PATH = "crawler.config_path"  # ctx.meta keys, shared by the group and its commands
_VERBOSE = "crawler.verbose"
_CONFIG_HELP = (
    "Configuration file (default: crawler.toml or [tool.crawler] in pyproject.toml, "
    "looked for from the current directory upward)."
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawler")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CRAWLER_CONFIG",
    default=None,
    help=_CONFIG_HELP,
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, config_path: Path | None) -> None:
    """Check the links of a Markdown post: dead, changed, blocked or alive, with titles.

    Example: crawler check links.md
    """
    import logging  # here, not at the top: `crawler extract` starts faster without it

    # -v and -vv raise the crawler's own loggers only: the libraries' debug output (markdown-it
    # logs every block rule it tries) would bury ours and slow every parse.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("crawler").setLevel(_log_level(verbose))
    # The configuration is read by each command (common_options), which may name another.
    ctx.meta[_VERBOSE] = verbose
    ctx.meta[_CONFIG_PATH] = config_path


def _log_level(verbose: int) -> int:
    return 30 - 10 * min(verbose, 2)  # WARNING, INFO, DEBUG


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    """-v given after the command: add to the count given before it."""
    if value:
        import logging

        ctx.meta[_VERBOSE] = ctx.meta.get(_VERBOSE, 0) + value
        logging.getLogger("crawler").setLevel(_log_level(ctx.meta[_VERBOSE]))


def _use_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Read the configuration file (--config after the command wins over one before it) and
    make its settings this command's defaults, before any other option is read."""
    path = value or ctx.meta.get(_CONFIG_PATH)
    assert ctx.command.name is not None
    if ctx.command.name == "extract" and path is None:
        return  # reading saved pages uses no setting: skip looking for a configuration file
    path = path or find_config(Path.cwd())
    ctx.meta[_CONFIG_PATH] = path
    fc = load_config(path) if path is not None else FileConfig()
    ctx.obj = fc
    ctx.default_map = _default_map(ctx.find_root(), fc).get(ctx.command.name, {})


def common_options(fn: F) -> F:
    """-v and --config, accepted after the command as well as before it."""
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        is_eager=True,
        expose_value=False,
        callback=_use_config,
        help=_CONFIG_HELP,
    )(fn)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        is_eager=True,
        expose_value=False,
        callback=_more_verbose,
        help="More log output (-vv for debug).",
    )(fn)


def _file_options(group: click.Group) -> dict[str, click.Parameter]:
    """Every option a configuration file may set, by name."""
    params: dict[str, click.Parameter] = {}
    for cmd in group.commands.values():
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name and p.name not in FILE_IGNORED:
                params.setdefault(p.name, p)
    return params


def _default_map(ctx: click.Context, fc: FileConfig) -> dict[str, dict[str, Any]]:
    """The file's settings as click defaults for every command that has them, validated."""
    group = ctx.command
    assert isinstance(group, click.Group)
    params = _file_options(group)
    keys = {st.file_key(name): name for name in params}
    out: dict[str, dict[str, Any]] = {}
    for key, raw in fc.values.items():
        name = keys.get(key.replace("-", "_"))
        if name is None:
            raise ConfigError(f"{fc.path}: {key}: unknown setting (see 'crawler config')")
        value = st.check_file_value(fc.path, key, params[name], raw)
        for cname, cmd in group.commands.items():
            if any(p.name == name for p in cmd.params):
                out.setdefault(cname, {})[name] = value
    return out


#: Options that make no sense in a configuration file.
FILE_IGNORED = frozenset({"run_id", "as_json", "url", "help", "config_path", "verbose"})


class _Progress:
    """A one-line counter on a TTY; otherwise a plain line at every tenth of the way.

    Links are listed once, with their details, in the summary at the end.
    """

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 10)

    def __call__(self, n: int) -> None:
        before = self.done
        self.done += n
        if self.quiet:
            return
        if self.tty:
            click.echo(f"\r  checked {self.done}/{self.total}", nl=False, err=True)
        elif self.done // self.step > before // self.step or self.done == self.total:
            click.echo(f"checked {self.done}/{self.total}", err=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            click.echo("\r" + " " * 40 + "\r", nl=False, err=True)


def _summary_lines(run: Run, paths: list[Path], confirm_runs: int | None = None) -> list[str]:
    from crawler.terminal import summary_lines

    return summary_lines(run, paths, confirm_runs)


class DbType(click.ParamType):  # type: ignore[type-arg]
    """A history database: a path, sqlite:///path, or postgresql://user@host:port/dbname."""

    name = "database"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from crawler.db import parse_db

        try:
            return parse_db(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def db_option(fn: F) -> F:
    """--db, shared by every command that reads or writes the history."""
    return click.option(
        "--db",
        type=DbType(),
        default=DEFAULT_DB,
        show_default=True,
        envvar="CRAWLER_DB",
        help="The history database: an SQLite file (a path or sqlite:///path) or "
        "postgresql://user@host:port/dbname. Env: CRAWLER_DB.",
    )(fn)


def _no_history_yet(db: Any) -> None:
    """Refuse to read an SQLite history that does not exist (a PostgreSQL one is asked)."""
    if isinstance(db, Path) and not db.exists():
        raise CrawlerError(f"no history at {db}: run 'crawler check' first")


def report_dir_option(fn: F) -> F:
    """--report-dir, shared by check and report."""
    return click.option(
        "--report-dir",
        # not file_okay=False: a file there is the tool's error (exit 1, _check_report_dir)
        type=click.Path(path_type=Path),
        default=DEFAULT_REPORT_DIR,
        show_default=True,
        help="Where the reports (json, md, html) are written.",
    )(fn)


def _formats(formats: str) -> list[str]:
    """--format's value as a list of known formats (a usage error otherwise)."""
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    for f in fmts:
        if f not in ALL_FORMATS:
            raise click.BadParameter(
                f"unknown format {f!r} ({', '.join(ALL_FORMATS)})", param_hint="--format"
            )
    return fmts


def _check_report_dir(report_dir: str | os.PathLike[str]) -> None:
    """Make sure reports can be written into report_dir before a run spends any time on the
    network: a CrawlerError (exit 1) names the directory and what is wrong. Nothing is created
    here (a run that fails for another reason leaves no empty directory behind)."""
    directory = Path(report_dir)
    if directory.exists():
        if not directory.is_dir():
            raise CrawlerError(f"report dir {directory}: not a directory")
        where = directory
    else:  # the nearest existing ancestor must be a directory the reports can be created in
        where = directory.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise CrawlerError(f"report dir {directory}: cannot create it ({where} is a file)")
    if not os.access(where, os.W_OK | os.X_OK):
        raise CrawlerError(f"report dir {directory}: cannot write in {where} (permission denied)")


async def _run_cancellable(coro: Any) -> Any:
    """Run coro; SIGTERM cancels it as Ctrl-C does, so the run is closed cleanly."""
    import asyncio

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


def _strip_fragments(links: list[Link]) -> dict[int, Link]:
    """Cut the #fragment off web links in place, so each page is fetched once however many of
    its anchors are cited; return id(new link) → the link as cited."""
    from crawler.fragments import without_fragment

    cited: dict[int, Link] = {}
    for i, link in enumerate(links):
        if "#" in link.url:
            links[i] = dataclasses.replace(link, url=without_fragment(link.url))
            cited[id(links[i])] = link
    return cited


#: click context meta key: links skipped by an inline crawler-ignore comment.
_IGNORED = "crawler.ignored"


def _load_links(
    inputs: tuple[str, ...], every: bool = False
) -> tuple[list[Link], dict[str, str], list[str]]:
    """Read every input; return the links, each file's sha256 and the sources in order."""
    from hashlib import sha256

    from crawler.post import (
        DEAD_MARK,
        drop_ignored,
        expand_inputs,
        parse_post,
        read_post,
        read_stdin,
    )

    links: list[Link] = []
    digests: dict[str, str] = {}
    sources = expand_inputs(inputs)
    for src in sources:
        if src == "-":
            data = sys.stdin.buffer.read()
            text, found = read_stdin(data, every)
        else:
            text, found = read_post(src, every)
            data = Path(src).read_bytes()
        # Dead marks written by `crawler enrich` are not part of what the author listed.
        if DEAD_MARK in text:  # crawler.enrich only for a post that has marks
            from crawler.enrich import strip_marks

            unmarked = strip_marks(text)
            if unmarked != text:
                found = parse_post(unmarked, src, every)
        found, ignored = drop_ignored(text, found)
        if ignored:  # counted with the excluded links (`crawler check`'s summary)
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.meta[_IGNORED] = ctx.meta.get(_IGNORED, 0) + ignored
        links.extend(found)
        # keyed by real path: enrich finds the check whatever path or folder it is given
        digests[src if src == "-" else os.path.realpath(src)] = sha256(data).hexdigest()
    return links, digests, sources


def _filter(
    links: list[Link], fc: FileConfig, include: tuple[str, ...], exclude: tuple[str, ...]
) -> tuple[list[Link], int]:
    """Apply include/exclude regexes (file, .crawlerignore and flags); return kept and dropped."""
    inc = list(fc.include) + [_regex(p, "--include") for p in include]
    exc = list(fc.exclude) + [_regex(p, "--exclude") for p in exclude]
    kept = [
        link
        for link in links
        if (not inc or any(r.search(link.url) for r in inc))
        and not any(r.search(link.url) for r in exc)
    ]
    return kept, len(links) - len(kept)


def _exclude_private(links: list[Link]) -> tuple[list[Link], int]:
    """--no-private: drop the links whose own host is a private address or localhost, as
    lychee's --exclude-private does; return kept and dropped."""
    from crawler.fetch import private_url

    kept = [link for link in links if private_url(link.url) is None]
    return kept, len(links) - len(kept)


def _regex(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise click.BadParameter(
            f"bad regular expression {pattern!r}: {exc}", param_hint=option
        ) from None


def input_options(fn: F) -> F:
    """Inputs and filters, shared by check and links."""
    fn = click.option(
        "--exclude",
        multiple=True,
        help="Skip URLs matching this regex (repeatable; also 'exclude' in the config "
        "and .crawlerignore).",
    )(fn)
    fn = click.option(
        "--include",
        multiple=True,
        help="Only URLs matching this regex (repeatable; also 'include' in the config).",
    )(fn)
    return click.argument("inputs", nargs=-1, required=True)(fn)


class VerdictList(click.ParamType):  # type: ignore[type-arg]
    """Verdicts that fail a run: comma-separated ("dead,error") or, in a file, a list."""

    name = "verdicts"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        out: list[str] = []
        for item in items:
            verdict = str(item).strip()
            if not verdict:
                continue
            if verdict not in FAIL_ON_CHOICES:
                self.fail(
                    f"{verdict!r} is not a verdict that can fail a run "
                    f"({', '.join(FAIL_ON_CHOICES)})",
                    param,
                    ctx,
                )
            if verdict not in out:
                out.append(verdict)
        if not out:
            self.fail(f"name at least one verdict ({', '.join(FAIL_ON_CHOICES)})", param, ctx)
        return tuple(out)


def fail_on_option(fn: F) -> F:
    """--fail-on: which verdicts make `crawler check` exit 3."""
    return click.option(
        "--fail-on",
        envvar="CRAWLER_FAIL_ON",
        type=VerdictList(),
        default=",".join(DEFAULT_FAIL_ON),
        show_default=True,
        help="Verdicts that make the run exit 3, comma-separated: "
        f"{', '.join(FAIL_ON_CHOICES)}. An error that persists becomes dead "
        "(--confirm-runs).",
    )(fn)


def ci_options(fn: F) -> F:
    """Options for CI systems (crawler check)."""
    return click.option(
        "--annotations/--no-annotations",
        default=None,
        help="Print a GitHub Actions ::error/::warning line per broken or changed link "
        "(default: when GITHUB_ACTIONS=true).",
    )(fn)


def _annotate(run: Run, kw: dict[str, Any]) -> None:
    """The GitHub annotations of a run on stdout, when asked for or running in Actions."""
    import os

    wanted = kw.pop("annotations", None)
    if wanted is None:
        wanted = os.environ.get("GITHUB_ACTIONS") == "true"
    if wanted and not run.network_down:
        from crawler.report.annotations import lines

        for line in lines(run):
            click.echo(line)


#: The colour of each verdict word on a terminal.
VERDICT_COLOURS = {
    "ok": "green",
    "redirected": "cyan",
    "changed": "yellow",
    "dead": "red",
    "blocked": "blue",
    "error": "magenta",
    "skipped": "bright_black",
}
# A verdict word where the terminal lines have one: leading a link's line ...
_LEADING_VERDICT = re.compile(r"^(\s+)(" + "|".join(VERDICT_COLOURS) + r")\b")
# ... or counted in the summary line: "3 dead, 1 changed".
_COUNTED_VERDICT = re.compile(r"(?<=\d )()(" + "|".join(VERDICT_COLOURS) + r")(?=,|$| \()")


def use_colour() -> bool | None:
    """click.echo's `color`: off with NO_COLOR, on with FORCE_COLOR (NO_COLOR wins, as in
    CPython), else click's own rule: only on a terminal."""
    import os

    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0", "false"):
        return True
    return None


def paint(line: str, summary: bool = False) -> str:
    """A terminal line with its verdict words coloured (click.echo drops the colour when the
    output is not a terminal); `summary`: the summary line, whose counts are coloured."""

    def one(m: re.Match[str]) -> str:
        word = m.group(2)
        bold = True if word in ("dead", "error") else None
        styled = click.style(word, fg=VERDICT_COLOURS[word], bold=bold)
        return m.group(1) + styled

    return (_COUNTED_VERDICT if summary else _LEADING_VERDICT).sub(one, line)


class RemapParam(click.ParamType):  # type: ignore[type-arg]
    """A --remap rule, 'REGEX REPLACEMENT'."""

    name = "remap"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from crawler.local import Remap

        if isinstance(value, Remap):
            return value
        try:
            return Remap.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def remap_option(fn: F) -> F:
    """--remap, shared by check and links."""
    return click.option(
        "--remap",
        multiple=True,
        type=RemapParam(),
        help="Rewrite URLs before checking: 'REGEX REPLACEMENT' (repeatable; the first rule "
        "that matches applies; $1 or \\1 for groups).",
    )(fn)


def _remap(links: list[Link], kw: dict[str, Any]) -> list[Link]:
    rules = kw.pop("remap", ())
    if not rules:
        return links
    from crawler.local import remap

    return remap(links, rules)


def local_options(fn: F) -> F:
    """Local links and fragments (crawler check)."""
    opts = [
        click.option(
            "--root-dir",
            type=click.Path(file_okay=False, exists=True, path_type=Path),
            default=None,
            help="Where site-absolute links (/images/x.png) are looked for on disk; without "
            "it they are skipped.",
        ),
        click.option(
            "--offline",
            is_flag=True,
            default=False,
            help="Check only local links (files on disk); web links count as excluded.",
        ),
        click.option(
            "--allow-empty",
            is_flag=True,
            default=False,
            help="A run with nothing to check exits 0 instead of 1 (pre-commit hooks: a commit "
            "of Markdown files without links).",
        ),
        click.option(
            "--include-fragments",
            is_flag=True,
            default=False,
            help="Check that a link's #fragment names an anchor of the page or file.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Run a check with fewer garbage collections: everything alive at the start (modules,
    the links) is never scanned again, and the young generation is collected less often.

    A check allocates a few hundred containers per request and keeps every result to the end;
    with the default thresholds the collector runs thousands of times and takes ~10 % of the
    CPU. The settings are restored afterwards (tests run checks in-process).
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _run_check(
    links: list[Link],
    sources: list[str],
    digests: dict[str, str],
    settings: FetchSettings,
    db: Path | None,
    options: Any,
    quiet: bool,
    partial_ok: bool = False,
) -> Run:
    """One run of the pipeline with the history locked for its duration.

    A run stopped by Ctrl-C or SIGTERM is returned as it stands (status "interrupted") when
    `partial_ok`; otherwise it raises KeyboardInterrupt.
    """
    import asyncio

    from crawler.db import open_store
    from crawler.pipeline import RunStopped, check_links

    store = None
    progress = _Progress(len(links), quiet)
    try:
        store = open_store(db) if db is not None else None
        if store is not None:
            store.lock()
        coro = check_links(
            links,
            settings,
            sources=sources,
            digests=digests,
            store=store,
            options=options,
            progress=progress,
            lease_seconds=_lease_seconds(),
        )
        try:
            return asyncio.run(_run_cancellable(coro))  # type: ignore[no-any-return]
        except RunStopped as stop:
            if not partial_ok:
                raise KeyboardInterrupt from None
            return stop.run
    finally:
        progress.close()
        if store is not None:
            store.close()


def _lease_seconds() -> float:
    """Host leases' length: CRAWLER_LEASE_SECONDS (tests shorten it), else the engine's."""
    from crawler.engine import LEASE_SECONDS

    value = os.environ.get("CRAWLER_LEASE_SECONDS")
    try:
        return float(value) if value else LEASE_SECONDS
    except ValueError:
        raise CrawlerError(f"CRAWLER_LEASE_SECONDS={value!r} is not a number of seconds") from None


@cli.command()
@common_options
@input_options
@report_dir_option
@click.option(
    "--format",
    "formats",
    envvar="CRAWLER_FORMAT",
    type=st.Words(*ALL_FORMATS),
    default=",".join(DEFAULT_FORMATS),
    show_default=True,
    help="Reports to write, comma-separated: json, md, html, junit, sarif, issue.",
)
@db_option
@click.option("--no-history", is_flag=True, help="Neither read nor write the history database.")
@click.option(
    "--max-age",
    type=st.Duration(),
    default=None,
    help="Reuse results younger than this (e.g. 12h) instead of fetching; never errors/blocks.",
)
@click.option(
    "--only",
    type=st.Choice("all", "failing"),
    default="all",
    show_default=True,
    help="'failing' refetches only the URLs whose last verdict was not ok.",
)
@click.option(
    "--confirm-runs",
    type=st.Int(1, 100),
    default=DEFAULT_CONFIRM_RUNS,
    show_default=True,
    help="Failing runs before an uncertain failure (error) counts as dead.",
)
@click.option(
    "--confirm-days",
    type=st.Number(0, 365, "days"),
    default=DEFAULT_CONFIRM_DAYS,
    show_default=True,
    help="Days those failing runs must span.",
)
@click.option(
    "--budget",
    envvar="CRAWLER_BUDGET",
    type=st.Duration(positive=True),
    default=None,
    help="Time budget (e.g. 20m): check the most due links first, stop claiming when it is up.",
)
@click.option(
    "--recheck-after",
    type=st.RecheckAfter(),
    default="ok=7d,failing=1d",
    show_default=True,
    help="With --budget: how long a verdict stands before its link is due again.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
@fail_on_option
@ci_options
@local_options
@remap_option
@fetch_options
def check(
    inputs: tuple[str, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    report_dir: Path,
    formats: str,
    db: Path,
    no_history: bool,
    max_age: timedelta | None,
    only: str,
    confirm_runs: int,
    confirm_days: float,
    budget: timedelta | None,
    recheck_after: Any,
    quiet: bool,
    fail_on: tuple[str, ...],
    **kw: Any,
) -> None:
    """Check every link of INPUTS, remember the results and write the broken-link reports.

    INPUTS are Markdown/HTML/text files, directories (searched for *.md, *.markdown, *.html,
    *.htm, *.txt), glob patterns, or - for standard input.

    Example: crawler check links.md --report-dir reports --db .crawler/history.sqlite
    """
    from crawler.history import ConfirmRule
    from crawler.pipeline import RunOptions

    fmts = _formats(formats)
    settings = _settings(kw)
    fc = click.get_current_context().find_object(FileConfig) or FileConfig()
    links, digests, sources = _load_links(inputs, every=True)
    links = _remap(links, kw)
    links, excluded = _filter(links, fc, include, exclude)
    excluded += click.get_current_context().meta.get(_IGNORED, 0)
    from crawler import local

    links, others = local.split(links)
    if settings.no_private:
        links, private = _exclude_private(links)
        excluded += private
    offline = kw.pop("offline", False)
    if offline:  # --offline: local links only; the others count as excluded, as in lychee
        excluded += len(links)
        links = []
    if not links and not others and not kw.pop("allow_empty", False):
        _nothing_to_check(sources, excluded)
    _check_report_dir(report_dir)  # before the first request, not after the whole crawl
    from crawler.fragments import fragment

    include_fragments = kw.pop("include_fragments", False)
    cited = _strip_fragments(links) if include_fragments else {}
    options = RunOptions(
        max_age=max_age,
        only_failing=only == "failing",
        confirm=ConfirmRule(runs=confirm_runs, days=confirm_days),
        budget=budget,
        recheck=recheck_after,
        anchors_for=frozenset(
            link.url for link in links if id(link) in cited and fragment(cited[id(link)].url)
        ),
    )
    with _few_collections():
        db_path = None if no_history else db
        if offline:  # nothing fetched: the history is neither read nor written
            now = datetime.now(UTC)
            run = Run(started_at=now, finished_at=now, sources=tuple(sources), checks=())
        else:
            run = _run_check(
                links, sources, digests, settings, db_path, options, quiet, partial_ok=True
            )
        if cited:
            from crawler import fragments

            run = dataclasses.replace(run, checks=fragments.apply(run.checks, cited))
        if others:
            root = kw.pop("root_dir", None)
            extra = local.check_local(others, root, include_fragments)
            run = dataclasses.replace(run, checks=local.merge(run.checks, extra, sources))
        # Imported once the run is over: the first request need not wait for the templates.
        from crawler.report import write_reports

        paths = write_reports(run, report_dir, fmts)
    lines = _summary_lines(run, paths, confirm_runs)
    # and the links --no-private refused when their host name resolved to a private address
    # (web links only: local links and other schemes that are skipped are counted as skipped)
    excluded += sum(
        c.verdict is Verdict.SKIPPED and local.kind_of(c.url) is local.Kind.WEB for c in run.checks
    )
    if excluded:
        lines[0] += f" ({excluded} excluded)"
    colour = use_colour()
    click.echo(paint(lines[0], summary=True), color=colour)
    if budget is not None:  # what the budget reached, or that nothing was due (even --quiet)
        from crawler.report.notes import budget_line

        click.echo(budget_line(run))
    if not quiet:
        # On a network-down run every link failed the same way: the one line below says it.
        for line in lines[1:]:
            if not run.network_down or line.startswith("report:"):
                click.echo(paint(line), color=colour)
    _annotate(run, kw)
    if run.status != "complete":
        click.echo(
            f"interrupted: the reports are partial, with the {len(run.checks)} references "
            "checked before the stop",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    if run.network_down:
        click.echo(
            "error: the network looks down (no host answered); no link was judged dead.", err=True
        )
        sys.exit(EXIT_NETWORK_DOWN)
    failing = frozenset(fail_on)
    if any(c.verdict.value in failing for c in run.checks):
        sys.exit(EXIT_BROKEN)


def _nothing_to_check(sources: list[str], excluded: int) -> None:
    """A run that would check no link is a failure, not "all links are alive"."""
    where = ", ".join("standard input" if s == "-" else s for s in sources) or "the input"
    if excluded:
        raise CrawlerError(
            f"nothing to check: all {excluded} links of {where} are excluded "
            "(--include, --exclude, .crawlerignore, --no-private, --offline)"
        )
    raise CrawlerError(f"nothing to check: no links found in {where}")


@cli.command()
@common_options
@click.option(
    "--run",
    "run_id",
    type=click.IntRange(min=1),
    default=None,
    help="Run id, from 1 (default: the latest).",
)
@report_dir_option
@click.option(
    "--format",
    "formats",
    default=",".join(DEFAULT_FORMATS),
    show_default=True,
    help=f"Reports to write, comma-separated: {', '.join(ALL_FORMATS)}.",
)
@db_option
def report(run_id: int | None, report_dir: Path, formats: str, db: Path) -> None:
    """Re-render the reports of a past run from the history, without fetching.

    A run that did not finish (interrupted, or still going) is rendered as partial.

    Example: crawler report --run 12 --report-dir /tmp/old-report
    """
    from crawler.db import open_store

    fmts = _formats(formats)
    _no_history_yet(db)
    store = open_store(db)
    try:
        run = store.load_run(run_id)
    finally:
        store.close()
    _check_report_dir(report_dir)
    from crawler.report import write_reports

    paths = write_reports(run, report_dir, fmts)
    state = "" if run.status == "complete" else f", {run.status}: partial"
    click.echo(_summary_lines(run, [])[0] + f" (run {run.run_id}{state})")
    for p in paths:
        click.echo(f"report: {p}")


@cli.command()
@common_options
@click.argument("url")
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
def history(url: str, db: Path, as_json: bool) -> None:
    """Print the timeline of one URL: every check, oldest first.

    Example: crawler history https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg
    """
    from crawler import listings
    from crawler.db import open_store

    _no_history_yet(db)
    store = open_store(db)
    try:
        rows = store.url_history(url)
        if not rows:  # the URL the check ended at, or the same URL over http/https
            twin = listings.other_scheme(url)
            rows = store.checks_matching([url, twin] if twin else [url])
            if rows:
                found = ", ".join(sorted({r["url"] for r in rows}))
                click.echo(f"{url}: not in the history itself; showing {found}", err=True)
    finally:
        store.close()
    if not rows:
        raise CrawlerError(f"{url} has never been checked in {db}")
    seen: set[tuple[int, str]] = set()
    for r in rows:
        if (r["run_id"], r["url"]) in seen:
            continue  # the same URL listed twice in one run
        seen.add((r["run_id"], r["url"]))
        record = listings.history_record(r)
        click.echo(
            json.dumps(record, ensure_ascii=False) if as_json else listings.history_line(record)
        )


@cli.command()
@common_options
@db_option
@click.option(
    "--limit", type=click.IntRange(1), default=30, show_default=True, help="Newest runs shown."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def runs(db: Path, limit: int, as_json: bool) -> None:
    """List the runs in the history, oldest first: id, started, finished, status (complete,
    interrupted, partial, running or network-down), counts per verdict and the posts checked.

    Example: crawler runs --limit 7
    """
    from crawler import listings
    from crawler.db import open_store

    _no_history_yet(db)
    store = open_store(db)
    try:
        infos = store.runs(limit=limit)
        counted = store.checked_counts([i.id for i in infos if not i.counts])
    finally:
        store.close()
    for info in infos:
        record = listings.run_record(info, info.counts or counted.get(info.id, {}))
        click.echo(json.dumps(record, ensure_ascii=False) if as_json else listings.run_line(record))


@cli.command()
@common_options
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per host.")
def hosts(db: Path, as_json: bool) -> None:
    """Print what the history knows of each host: requests, answers by class, verification
    pages met, the learned pace, median latency and last lease, busiest first.

    Example: crawler hosts --json
    """
    from crawler.db import open_store
    from crawler.pace import host_lines

    _no_history_yet(db)
    store = open_store(db)
    try:
        rows = store.host_stats()
    finally:
        store.close()
    for line in host_lines(rows, as_json):
        click.echo(line)


@cli.command()
@common_options
@click.argument("urls", nargs=-1, required=True)
@db_option
def accept(urls: tuple[str, ...], db: Path) -> None:
    """Accept the page's current title of changed links: they are ok again from the next run.

    A title change found by comparing with the last check stays `changed` on every run until it
    is accepted (or the post's own title for the link says the new one).

    Example: crawler accept https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg
    """
    from crawler.db import open_store

    _no_history_yet(db)
    store = open_store(db)
    missing = []
    try:
        store.lock()  # a check going on would write its own states over the acceptance
        for url in urls:
            title = store.accept_title(url)
            if title is None:
                missing.append(url)
            else:
                click.echo(f"accepted: {safe(url)}  “{safe(title)}”")
    finally:
        store.close()
    if missing:
        raise CrawlerError(f"no alive check with a title to accept for {safe(', '.join(missing))}")


@cli.command()
@common_options
@click.argument("post", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@click.option("--fresh", is_flag=True, help="Run a check of POST first instead of using the last.")
@click.option("--titles/--no-titles", default=True, show_default=True, help="Add missing titles.")
@click.option("--summaries", is_flag=True, help="Add the fetched summary under each title.")
@click.option("--mark-dead", is_flag=True, help="Mark dead entries （已失效，DATE）, URL kept.")
@click.option("--unmark", is_flag=True, help="Remove the marks that --mark-dead wrote.")
@click.option("--update-redirects", is_flag=True, help="Replace permanently moved URLs.")
@click.option(
    "--update-titles",
    is_flag=True,
    help="Replace the listed title of each changed entry with the page's (accepts the change).",
)
@click.option("--archive", is_flag=True, help="Add an Internet Archive snapshot to dead entries.")
@click.option(
    "--archive-endpoint",
    default=DEFAULT_ARCHIVE_ENDPOINT,
    show_default=True,
    envvar="CRAWLER_ARCHIVE_ENDPOINT",
    help="The Wayback availability API.",
)
@click.option(
    "--archive-before",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Snapshots on or before this date (default: the post's date, else its file time).",
)
@click.option("--dry-run", is_flag=True, help="Print a unified diff and write nothing.")
@fetch_options
def enrich(
    post: Path,
    db: Path,
    fresh: bool,
    titles: bool,
    summaries: bool,
    mark_dead: bool,
    unmark: bool,
    update_redirects: bool,
    update_titles: bool,
    archive: bool,
    archive_endpoint: str,
    archive_before: datetime | None,
    dry_run: bool,
    **kw: Any,
) -> None:
    """Improve POST from what the last check learned: titles, summaries, dead marks, moves.

    Nothing else in the file changes (bytes, line endings, encoding); the file is written
    atomically with a backup beside it (POST.bak.1, .2, …).

    Example: crawler enrich links.md --mark-dead --dry-run
    """
    from crawler import enrich as en
    from crawler.db import open_store

    options = en.EnrichOptions(
        titles=titles,
        summaries=summaries,
        mark_dead=mark_dead,
        unmark=unmark,
        update_redirects=update_redirects,
        update_titles=update_titles,
        archive=archive,
    )
    try:
        raw = post.read_bytes()
    except FileNotFoundError:
        raise CrawlerError(f"{post}: no such file") from None
    except OSError as exc:
        raise CrawlerError(f"{post}: cannot read ({exc.strerror})") from None
    findings: dict[str, en.Finding] = {}
    if not (unmark and not titles and not summaries and not update_redirects and not update_titles):
        if fresh:
            from crawler.pipeline import RunOptions

            links, digests, sources = _load_links((str(post),))
            run = _run_check(links, sources, digests, _settings(kw), db, RunOptions(), True)
            click.echo(_summary_lines(run, [])[0])
            if run.network_down:
                raise NetworkDownError("the network looks down; nothing to enrich from")
        store = open_store(db)
        try:
            run_id, digest = _latest_run_for(store, post)
            trusted = {digest} | store.enrichment_digests(run_id)
            run = store.load_run(run_id)
        finally:
            store.close()
        findings = en.findings_from_checks(run.checks)
        if en.post_digest(raw) not in trusted:
            stale = en.changed_entries(raw, findings, options)
            if stale:
                raise en.PostChangedError(str(post), stale[0])
    if options.archive:
        findings = _with_snapshots(post, raw, findings, archive_endpoint, archive_before, kw)
    new = en.enrich_text(raw, findings, options)
    if new == raw:
        click.echo(f"{post}: nothing to change")
        return
    if dry_run:
        click.echo(en.unified_diff(raw, new, str(post)), nl=False)
        return
    backup = en.write_atomic_with_backup(post, new)
    if findings:
        store = open_store(db)
        try:
            run_id, _ = _latest_run_for(store, post)
            store.add_enrichment(run_id, str(post), en.post_digest(new), datetime.now(UTC))
        finally:
            store.close()
    changed = en.count_changed_lines(raw, new)
    lines = "line" if changed == 1 else "lines"
    click.echo(f"{post}: enriched ({changed} {lines} added or changed); backup: {backup}")


def _with_snapshots(
    post: Path,
    raw: bytes,
    findings: dict[str, Any],
    endpoint: str,
    before: datetime | None,
    kw: dict[str, Any],
) -> dict[str, Any]:
    """The findings with the archive's snapshots of dead URLs; CrawlerError if it can't answer."""
    import asyncio

    from crawler import archive
    from crawler.enrich import add_archive_urls

    cutoff = archive.archive_cutoff(
        raw, post, before.date() if before else None, datetime.now().date()
    )
    dead = [url for url, f in findings.items() if f.verdict is Verdict.DEAD]
    snaps = asyncio.run(archive.find_snapshots(dead, cutoff, _settings(kw), endpoint))
    if snaps.failed and len(snaps.failed) == snaps.asked:
        why = next(iter(snaps.failed.values()))
        raise NetworkDownError(
            f"the archive at {endpoint} did not answer ({safe(why)}); nothing written"
        )
    if snaps.failed:
        click.echo(
            f"{post}: the archive did not answer for {len(snaps.failed)} of {snaps.asked} dead "
            "links; they are marked without a snapshot (run again later to add it)",
            err=True,
        )
    return add_archive_urls(findings, snaps.found)


def _latest_run_for(store: Any, post: Path) -> tuple[int, str]:
    """The newest complete run that checked post, and the post's digest then."""
    found = store.latest_check_of(os.path.realpath(post))
    if found is not None:
        return int(found[0]), str(found[1])
    raise CrawlerError(
        f"{post}: no complete check in the history; run 'crawler check {post}' or use --fresh"
    )


@cli.group("db")
def db_group() -> None:
    """Manage history databases (SQLite files and PostgreSQL).

    Example: crawler db copy --from .crawler/history.sqlite --to postgresql://me@db/links
    """


@db_group.command("copy")
@click.option("--from", "source", type=DbType(), required=True, help="The history to copy.")
@click.option("--to", "dest", type=DbType(), required=True, help="An empty history to fill.")
def db_copy(source: Any, dest: Any) -> None:
    """Copy a whole history into an empty database (SQLite and PostgreSQL either way).

    One transaction: either everything is copied, with every table's count and a sample of its
    rows checked, or nothing is.

    Example: crawler db copy --from .crawler/history.sqlite --to postgresql://me@db/links
    """
    from crawler.db import open_store
    from crawler.dbcopy import copy_history

    _no_history_yet(source)
    if str(source) == str(dest) or (
        isinstance(source, Path) and isinstance(dest, Path) and source.resolve() == dest.resolve()
    ):
        raise CrawlerError(f"{source}: --from and --to are the same database")
    src = open_store(source)
    try:
        dst = open_store(dest)
        try:
            done = copy_history(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    rows = ", ".join(f"{n} {table}" for table, n in done.rows.items())
    click.echo(
        f"copied {source} to {dest}: {rows}; counts match, {done.sampled} sampled rows equal"
    )


@cli.command()
@common_options
@input_options
@remap_option
def links(
    inputs: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...], **kw: Any
) -> None:
    """List every reference found in INPUTS without fetching anything, one JSON object a line.

    Example: crawler links links.md | jq -r .url
    """
    fc = click.get_current_context().find_object(FileConfig) or FileConfig()
    from crawler.local import kind_of

    found, _, _ = _load_links(inputs, every=True)
    found = _remap(found, kw)
    found, _ = _filter(found, fc, include, exclude)
    for link in found:
        click.echo(
            json.dumps(
                {
                    "url": link.url,
                    "file": link.source,
                    "line": link.line,
                    "section": " / ".join(link.section),
                    "listed_title": link.listed_title,
                    "kind": kind_of(link.url).value,
                },
                ensure_ascii=False,
            )
        )


@cli.command("config")
@common_options
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Print the effective settings of 'crawler check' as a configuration file, each with
    where it comes from: `crawler config > crawler.toml` writes a file that reads back the same.

    Header and cookie values are secrets and never printed.

    Example: crawler --config crawler.toml config
    """
    from crawler.configfile import render_config

    fc = ctx.find_object(FileConfig) or FileConfig()
    assert ctx.parent is not None
    sub = check.make_context("check", ["-"], parent=ctx.parent)
    names = {
        click.core.ParameterSource.COMMANDLINE: "flag",
        click.core.ParameterSource.ENVIRONMENT: "environment",
        click.core.ParameterSource.DEFAULT_MAP: "file",
    }
    entries = []
    for p in check.params:
        if not isinstance(p, click.Option) or not p.name or p.name in ("include", "exclude"):
            continue  # include/exclude: the file's patterns, listed by render_config
        if p.name in FILE_IGNORED or p.name == "quiet":
            continue
        source = names.get(sub.get_parameter_source(p.name), "default")  # type: ignore[arg-type]
        value = sub.params.get(p.name)
        if p.name == "header" and value:  # header values may be secrets (tokens): names only
            value = [f"{name}: (value hidden)" for name, _ in value]
        entries.append((st.file_key(p.name), value, source))
    click.echo(render_config(entries, fc, secret=("header",)), nl=False)


@cli.command()
@common_options
@click.argument("pages", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--url", default=None, help="The URL the page was saved from (selects site rules).")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    help="Processes reading pages at once; 0 = one per core from 32 pages on.",
)
def extract(pages: tuple[Path, ...], url: str | None, jobs: int) -> None:
    """Print what the crawler reads from saved HTML pages, one JSON object per line.

    Lines come in the order of PAGES, whatever --jobs is.

    Example: crawler extract saved/article.html
    """
    from crawler.config import can_fork, usable_cpus
    from crawler.extract.batch import extract_lines, processes_for

    processes = processes_for(len(pages), jobs, usable_cpus(), can_fork())
    failed = False
    for line, ok in extract_lines(pages, url, processes):
        failed |= not ok
        sys.stdout.write(line + "\n")
    if failed:
        sys.exit(EXIT_TOOL)


@cli.command()
@common_options
@click.option(
    "--run", "run_id", type=int, default=None, help="The run to work on (default: every open run)."
)
@click.option(
    "--once", is_flag=True, help="Without --run: stop when no run is left open (else wait)."
)
@db_option
@click.option("--settings", "settings_file", type=click.File("r"), hidden=True, default=None)
@click.option("--parent", type=int, hidden=True, default=None)
@fetch_options
def worker(
    run_id: int | None, once: bool, db: Any, settings_file: Any, parent: int | None, **kw: Any
) -> None:
    """Work on the runs of the history: lease their hosts, check their links, write the checks.

    `crawler check` starts these itself for long lists (--workers); others started by hand, on
    this machine or (with PostgreSQL) on any other, help the runs finish. Without --run a worker
    joins every open run in turn, and waits for new ones unless --once is given. SIGTERM or
    Ctrl-C stops it after it has written what it finished and given its hosts back.

    Example: crawler worker --db postgresql://crawler@db.internal/links --max-concurrency 64
    """
    from crawler.engine import settings_from_json
    from crawler.pipeline import work_on_run

    _no_history_yet(db)
    if settings_file is not None:
        settings = settings_from_json(json.load(settings_file))
    else:
        settings = _settings(kw)
    sys.exit(work_on_run(db, run_id, settings, parent, once=once))


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
    except Exception as exc:  # a bug (never a link's failure): one line, the traceback under -v
        import logging
        import traceback

        if logging.getLogger("crawler").isEnabledFor(logging.INFO):
            traceback.print_exc()
        click.echo(f"error: a bug: {type(exc).__name__}: {exc} (-v shows where)", err=True)
        sys.exit(EXIT_TOOL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
