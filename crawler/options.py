"""The options of the commands, their value types and the configuration file's part in them:
what `crawler --help` shows. cli.py declares the commands with these and calls one function each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

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
from crawler.errors import ConfigError

if TYPE_CHECKING:
    from crawler.pipeline import CheckJob

F = TypeVar("F", bound=Callable[..., Any])


def stack(fn: F, *decorators: Callable[[Any], Any]) -> F:
    """fn under decorators, the first one outermost (as if written above fn in that order)."""
    for deco in reversed(decorators):
        fn = deco(fn)
    return fn


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
        if not val.isascii():  # httpx cannot send it; aiohttp would send UTF-8
            self.fail(
                f"{value!r}: a header's value must be ASCII (percent-encode the rest)", param, ctx
            )
        return (name, val)


def setting(
    name: str, kind: click.ParamType[Any], default: Any, help: str, *decls: str, **attrs: Any
) -> Callable[[F], F]:
    """An option that the environment variable CRAWLER_ and its name may also set (--max-body:
    CRAWLER_MAX_BODY), its default shown in --help."""
    env = "CRAWLER_" + name.removeprefix("--").upper().replace("-", "_")
    attrs.setdefault("show_default", True)
    return click.option(name, *decls, envvar=env, type=kind, default=default, help=help, **attrs)


def fetch_options(fn: F) -> F:
    """The fetcher's options, shared by every command that fetches (lychee's names)."""
    return stack(
        fn,
        setting(
            "--max-concurrency",
            st.Int(1, 1024),
            DEFAULT_MAX_CONCURRENCY,
            "Requests in flight over all hosts.",
        ),
        setting(
            "--host-concurrency",
            st.Int(1, 256),
            DEFAULT_HOST_CONCURRENCY,
            "Requests in flight to one host.",
        ),
        setting(
            "--host-interval",
            st.Number(0, 60, "seconds"),
            DEFAULT_HOST_INTERVAL,
            "Minimum seconds between request starts on one host.",
        ),
        setting(
            "--timeout",
            st.Number(0.1, 600, "seconds"),
            DEFAULT_TIMEOUT,
            "Seconds for connecting and for each read; one attempt may take 3x this in all.",
        ),
        setting(
            "--retries",
            st.Int(0, 10),
            DEFAULT_RETRIES,
            "Retries after the first attempt (timeouts, resets, 429, 5xx, anti-robot pages).",
        ),
        setting(
            "--backoff",
            st.Number(0, 300, "seconds"),
            DEFAULT_BACKOFF_INITIAL,
            "Base of the exponential backoff between retries, seconds (with full jitter).",
        ),
        setting(
            "--user-agent",
            st.Text(ascii=True),
            DEFAULT_USER_AGENT,
            "User-Agent header.",
            show_default=False,
        ),
        setting(
            "--max-body",
            st.Int(1024, 1 << 30),
            DEFAULT_MAX_BODY,
            "Bytes of a page read for its title and summary.",
        ),
        setting(
            "--accept",
            st.Statuses(),
            "",
            "Extra HTTP statuses that count as alive, comma-separated (e.g. 403,999).",
            show_default=False,
        ),
        setting(
            "--cookie-jar",
            st.FilePath(must_exist=True),
            None,
            "A Netscape cookies.txt file; each cookie goes only to its own domain.",
        ),
        setting(
            "--transport",
            st.Choice("httpx", "aiohttp"),
            DEFAULT_TRANSPORT,
            "HTTP transport under the httpx API: aiohttp's pool (fast) or httpx's own.",
        ),
        setting(
            "--no-private",
            st.Bool(),
            False,
            "Exclude links to loopback, private, link-local or cloud metadata addresses "
            "(as lychee's --exclude-private) and never connect to one, at any redirect.",
            is_flag=True,
            show_default=False,
        ),
        click.option(
            "--header",
            "header",
            multiple=True,
            type=HeaderParam(),
            help="A request header for every host, 'Name: value' (repeatable; a host's own "
            "headers go in [hosts] of the configuration file).",
        ),
        setting(
            "--max-redirects",
            st.Int(0, 100),
            DEFAULT_MAX_REDIRECTS,
            "Redirects followed before a link counts as an error (too-many-redirects).",
        ),
        setting(
            "--workers",
            st.Workers(0, 64),
            st.Workers.AUTO,
            "Worker processes, each leasing hosts from the history: auto = one per core "
            "for lists of 1,000 URLs or more, in-process for shorter ones; 0 = none here, only "
            "`crawler worker` processes (any machine) check the run.",
        ),
    )


def fetch_settings(kw: dict[str, Any]) -> FetchSettings:
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
        workers=None if kw["workers"] == st.Workers.AUTO else kw["workers"],
        headers=dict(kw.get("header") or ()),
        max_redirects=kw.get("max_redirects", DEFAULT_MAX_REDIRECTS),
    )


CONFIG_PATH = "crawler.config_path"  # ctx.meta keys, shared by the group and its commands
VERBOSE = "crawler.verbose"
CONFIG_HELP = (
    "Configuration file (default: crawler.toml or [tool.crawler] in pyproject.toml, "
    "looked for from the current directory upward)."
)


def log_level(verbose: int) -> int:
    return 30 - 10 * min(verbose, 2)  # WARNING, INFO, DEBUG


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    """-v given after the command: add to the count given before it."""
    if value:
        import logging

        ctx.meta[VERBOSE] = ctx.meta.get(VERBOSE, 0) + value
        logging.getLogger("crawler").setLevel(log_level(ctx.meta[VERBOSE]))


def _use_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Read the configuration file (--config after the command wins over one before it) and
    make its settings this command's defaults, before any other option is read."""
    path = value or ctx.meta.get(CONFIG_PATH)
    assert ctx.command.name is not None
    if ctx.command.name == "extract" and path is None:
        return  # reading saved pages uses no setting: skip looking for a configuration file
    path = path or find_config(Path.cwd())
    ctx.meta[CONFIG_PATH] = path
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
        help=CONFIG_HELP,
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
    return setting(
        "--db",
        DbType(),
        DEFAULT_DB,
        "The history database: an SQLite file (a path or sqlite:///path) or "
        "postgresql://user@host:port/dbname. Env: CRAWLER_DB.",
    )(fn)


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


def format_option(fn: F) -> F:
    """--format, shared by check and report."""
    return setting(
        "--format",
        st.Words(*ALL_FORMATS),
        ",".join(DEFAULT_FORMATS),
        f"Reports to write, comma-separated: {', '.join(ALL_FORMATS)}.",
        "formats",
    )(fn)


def parse_formats(formats: str) -> list[str]:
    """--format's value (checked by its type) as a list."""
    return [f for f in formats.split(",") if f]


def _patterns(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[re.Pattern[str], ...]:
    """--include/--exclude compiled; a bad one is refused naming the option."""
    out = []
    for pattern in values:
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise click.BadParameter(
                f"bad regular expression {pattern!r}: {exc}", param_hint=f"--{param.name}"
            ) from None
    return tuple(out)


def input_options(fn: F) -> F:
    """Inputs and filters, shared by check and links."""
    return stack(
        fn,
        click.argument("inputs", nargs=-1, required=True),
        click.option(
            "--include",
            multiple=True,
            callback=_patterns,
            help="Only URLs matching this regex (repeatable; also 'include' in the config).",
        ),
        click.option(
            "--exclude",
            multiple=True,
            callback=_patterns,
            help="Skip URLs matching this regex (repeatable; also 'exclude' in the config "
            "and .crawlerignore).",
        ),
    )


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
    return setting(
        "--fail-on",
        VerdictList(),
        ",".join(DEFAULT_FAIL_ON),
        "Verdicts that make the run exit 3, comma-separated: "
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
    return stack(fn, *opts)


def check_options(fn: F) -> F:
    """Every option of `crawler check`, in --help's order."""
    return stack(
        fn,
        common_options,
        input_options,
        report_dir_option,
        format_option,
        db_option,
        click.option(
            "--no-history", is_flag=True, help="Neither read nor write the history database."
        ),
        click.option(
            "--max-age",
            type=st.Duration(),
            default=None,
            help="Reuse results younger than this (e.g. 12h) instead of fetching; "
            "never errors/blocks.",
        ),
        click.option(
            "--only",
            type=st.Choice("all", "failing"),
            default="all",
            show_default=True,
            help="'failing' refetches only the URLs whose last verdict was not ok.",
        ),
        click.option(
            "--confirm-runs",
            type=st.Int(1, 100),
            default=DEFAULT_CONFIRM_RUNS,
            show_default=True,
            help="Failing runs before an uncertain failure (error) counts as dead.",
        ),
        click.option(
            "--confirm-days",
            type=st.Number(0, 365, "days"),
            default=DEFAULT_CONFIRM_DAYS,
            show_default=True,
            help="Days those failing runs must span.",
        ),
        setting(
            "--budget",
            st.Duration(positive=True),
            None,
            "Time budget (e.g. 20m): check the most due links first, stop claiming when it is up.",
        ),
        click.option(
            "--recheck-after",
            type=st.RecheckAfter(),
            default="ok=7d,failing=1d",
            show_default=True,
            help="With --budget: how long a verdict stands before its link is due again.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="Print only the summary line."),
        fail_on_option,
        ci_options,
        local_options,
        remap_option,
        fetch_options,
    )


def enrich_options(fn: F) -> F:
    """POST and every option of `crawler enrich`, in --help's order."""
    return stack(
        fn,
        common_options,
        click.argument("post", type=click.Path(dir_okay=False, path_type=Path)),
        db_option,
        click.option(
            "--fresh", is_flag=True, help="Run a check of POST first instead of using the last."
        ),
        click.option(
            "--titles/--no-titles", default=True, show_default=True, help="Add missing titles."
        ),
        click.option("--summaries", is_flag=True, help="Add the fetched summary under each title."),
        click.option(
            "--mark-dead", is_flag=True, help="Mark dead entries （已失效，DATE）, URL kept."
        ),
        click.option("--unmark", is_flag=True, help="Remove the marks that --mark-dead wrote."),
        click.option("--update-redirects", is_flag=True, help="Replace permanently moved URLs."),
        click.option(
            "--update-titles",
            is_flag=True,
            help="Replace the listed title of each changed entry with the page's "
            "(accepts the change).",
        ),
        click.option(
            "--archive", is_flag=True, help="Add an Internet Archive snapshot to dead entries."
        ),
        setting(
            "--archive-endpoint",
            click.STRING,
            DEFAULT_ARCHIVE_ENDPOINT,
            "The Wayback availability API.",
        ),
        click.option(
            "--archive-before",
            type=click.DateTime(formats=["%Y-%m-%d"]),
            default=None,
            help="Snapshots on or before this date (default: the post's date, else its file time).",
        ),
        click.option("--dry-run", is_flag=True, help="Print a unified diff and write nothing."),
        fetch_options,
    )


def effective_config(ctx: click.Context, command: click.Command) -> str:
    """`crawler config`: command's settings as a configuration file, each with its source
    (flag, environment, file or default); header values hidden."""
    from crawler.configfile import render_config

    fc = ctx.find_object(FileConfig) or FileConfig()
    assert ctx.parent is not None
    sub = command.make_context(command.name, ["-"], parent=ctx.parent)
    names = {
        click.core.ParameterSource.COMMANDLINE: "flag",
        click.core.ParameterSource.ENVIRONMENT: "environment",
        click.core.ParameterSource.DEFAULT_MAP: "file",
    }
    entries = []
    for p in command.params:
        if not isinstance(p, click.Option) or not p.name or p.name in ("include", "exclude"):
            continue  # include/exclude: the file's patterns, listed by render_config
        if p.name in FILE_IGNORED or p.name == "quiet":
            continue
        source = names.get(sub.get_parameter_source(p.name), "default")  # type: ignore[arg-type]
        value = sub.params.get(p.name)
        if p.name == "header" and value:  # header values may be secrets (tokens): names only
            value = [f"{name}: (value hidden)" for name, _ in value]
        entries.append((st.file_key(p.name), value, source))
    return render_config(entries, fc, secret=("header",))


def run_option(help: str) -> Callable[[F], F]:
    """--run: a run of the history by its id (report's and worker's)."""
    return click.option("--run", "run_id", type=click.IntRange(min=1), default=None, help=help)


def report_options(fn: F) -> F:
    """Every option of `crawler report`, in --help's order."""
    return stack(
        fn,
        common_options,
        run_option("Run id, from 1 (default: the latest)."),
        report_dir_option,
        format_option,
        db_option,
        fail_on_option,
    )


def runs_options(fn: F) -> F:
    """Every option of `crawler runs`, in --help's order."""
    return stack(
        fn,
        common_options,
        db_option,
        click.option(
            "--limit",
            type=click.IntRange(1),
            default=30,
            show_default=True,
            help="Newest runs shown.",
        ),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per run."),
    )


def worker_options(fn: F) -> F:
    """Every option of `crawler worker`, in --help's order."""
    return stack(
        fn,
        common_options,
        run_option("The run to work on (default: every open run)."),
        click.option(
            "--once", is_flag=True, help="Without --run: stop when no run is left open (else wait)."
        ),
        db_option,
        click.option(
            "--settings", "settings_file", type=click.File("r"), hidden=True, default=None
        ),
        click.option("--parent", type=int, hidden=True, default=None),
        fetch_options,
    )


def check_job(kw: dict[str, Any]) -> CheckJob:
    """`crawler check`'s options (click's keyword arguments) as the job pipeline.check_inputs
    does; the configuration file's include and exclude patterns come first."""
    from crawler.history import ConfirmRule
    from crawler.pipeline import CheckJob, RunOptions

    fc = click.get_current_context().find_object(FileConfig) or FileConfig()
    formats = parse_formats(kw["formats"])
    return CheckJob(
        inputs=kw["inputs"],
        settings=fetch_settings(kw),
        db=None if kw["no_history"] else kw["db"],
        report_dir=kw["report_dir"],
        formats=formats,
        include=(*fc.include, *kw["include"]),
        exclude=(*fc.exclude, *kw["exclude"]),
        remap=kw["remap"],
        fail_on=kw["fail_on"],
        options=RunOptions(
            max_age=kw["max_age"],
            only_failing=kw["only"] == "failing",
            confirm=ConfirmRule(runs=kw["confirm_runs"], days=kw["confirm_days"]),
            budget=kw["budget"],
            recheck=kw["recheck_after"],
        ),
        offline=kw["offline"],
        allow_empty=kw["allow_empty"],
        include_fragments=kw["include_fragments"],
        root_dir=kw["root_dir"],
    )
