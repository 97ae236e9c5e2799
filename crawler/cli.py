"""Command line: the only module that prints or exits. Each command reads its options (declared
in crawler.options) and calls one function of the stage that does the work.

Exit codes: 0 no broken link, 1 the tool failed (a bad value too, from any source), 2 usage
error (the command line does not parse), 3 links with a --fail-on verdict found (default: dead),
4 the network was down (nothing judged), 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from crawler import __version__
from crawler.configfile import FileConfig
from crawler.errors import CrawlerError, NetworkDownError
from crawler.extract.command import extract_options
from crawler.options import (
    CONFIG_HELP,
    CONFIG_PATH,
    VERBOSE,
    DbType,
    check_job,
    check_options,
    common_options,
    db_option,
    enrich_options,
    fetch_settings,
    input_options,
    log_level,
    parse_formats,
    remap_option,
    report_options,
    runs_options,
    worker_options,
)
from crawler.sanitize import terminal as safe
from crawler.settings import ToolError, refusals
from crawler.start import EXIT_INTERRUPTED, EXIT_OK, finish
from crawler.terminal import Progress, check_lines, summary_line, use_colour
from crawler.types import Run

EXIT_BROKEN = 3
EXIT_NETWORK_DOWN = 4


class _Group(click.Group):
    """Turns the tool's own errors and the values click refused into one line and their exit
    code, never a traceback: the one place a CrawlerError becomes an exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        ctx: click.Context = self._one_line(super().make_context, *args, **kwargs)
        return ctx  # (the options given before the command)

    def invoke(self, ctx: click.Context) -> Any:
        return self._one_line(super().invoke, ctx)

    @staticmethod
    def _one_line(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            with refusals():
                return call(*args, **kwargs)
        except CrawlerError as exc:
            raise ToolError(str(exc), exc.exit_code) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawler")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CRAWLER_CONFIG",
    default=None,
    help=CONFIG_HELP,
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
    logging.getLogger("crawler").setLevel(log_level(verbose))
    # The configuration is read by each command (common_options), which may name another.
    ctx.meta[VERBOSE] = verbose
    ctx.meta[CONFIG_PATH] = config_path


@cli.command()
@check_options
def check(**kw: Any) -> None:
    """Check every link of INPUTS, remember the results and write the broken-link reports.

    INPUTS are Markdown/HTML/text files, directories (searched for *.md, *.markdown, *.html,
    *.htm, *.txt), glob patterns, or - for standard input.

    Example: crawler check links.md --report-dir reports --db .crawler/history.sqlite
    """
    from crawler.pipeline import check_inputs

    job = check_job(kw)
    quiet = kw["quiet"]
    done = check_inputs(job, lambda total: Progress(total, quiet))
    colour = use_colour()
    shown = check_lines(
        done.run, done.reports, done.excluded, quiet, kw["confirm_runs"], done.noted
    )
    click.echo(shown[0], color=colour)
    if kw["budget"] is not None:  # what the budget reached, or that nothing was due (even -q)
        from crawler.report.notes import budget_line

        click.echo(budget_line(done.run))
    for line in shown[1:]:
        click.echo(line, color=colour)
    wanted = kw["annotations"]
    if wanted is None:
        wanted = os.environ.get("GITHUB_ACTIONS") == "true"
    if wanted and not done.run.network_down:
        from crawler.report.annotations import lines

        for line in lines(done.run, job.fail_on):
            click.echo(line)
    sys.exit(_exit_code(done.run, job.fail_on))


def _exit_code(run: Run, fail_on: Sequence[str]) -> int:
    """A check's exit code, with the line that explains a stopped or network-down run."""
    if run.status != "complete":
        n = len(run.checks)
        why = f"the reports are partial, with the {n} references checked before the stop"
        click.echo(f"interrupted: {why}", err=True)
        return EXIT_INTERRUPTED
    if run.network_down:
        why = "the network looks down (no host answered); no link was judged dead."
        click.echo(f"error: {why}", err=True)
        return EXIT_NETWORK_DOWN
    counts = run.counts()  # the tally the reports counted
    return EXIT_BROKEN if any(counts.get(v) for v in fail_on) else EXIT_OK


@cli.command()
@report_options
def report(
    run_id: int | None, report_dir: Path, formats: str, db: Any, fail_on: tuple[str, ...]
) -> None:
    """Re-render the reports of a past run from the history, without fetching.

    A run that did not finish (interrupted, or still going) is rendered as partial.

    Example: crawler report --run 12 --report-dir /tmp/old-report
    """
    from crawler.pipeline import rerender

    run, paths = rerender(db, run_id, report_dir, parse_formats(formats), fail_on)
    state = "" if run.status == "complete" else f", {run.status}: partial"
    click.echo(summary_line(run) + f" (run {run.run_id}{state})")
    for p in paths:
        click.echo(f"report: {p}")


@cli.command()
@common_options
@click.argument("url")
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
def history(url: str, db: Any, as_json: bool) -> None:
    """Print the timeline of one URL: every check, oldest first.

    Example: crawler history https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg
    """
    from crawler import listings
    from crawler.db import open_store, require_history

    require_history(db)
    store = open_store(db)
    try:
        checks, note = listings.url_timeline(store, url)
    finally:
        store.close()
    if note:
        click.echo(note, err=True)
    if not checks:
        raise CrawlerError(f"{url} has never been checked in {db}")
    for c in checks:
        record = listings.history_record(c)
        click.echo(
            json.dumps(record, ensure_ascii=False) if as_json else listings.history_line(record)
        )


@cli.command()
@runs_options
def runs(db: Any, limit: int, as_json: bool) -> None:
    """List the runs in the history, oldest first: id, started, finished, status (complete,
    interrupted, partial, running or network-down), counts per verdict and the posts checked.

    Example: crawler runs --limit 7
    """
    from crawler import listings
    from crawler.db import open_store, require_history

    require_history(db)
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
def hosts(db: Any, as_json: bool) -> None:
    """Print what the history knows of each host: requests, answers by class, verification
    pages met, the learned pace, median latency and last lease, busiest first.

    Example: crawler hosts --json
    """
    from crawler.db import open_store, require_history
    from crawler.pace import host_lines

    require_history(db)
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
def accept(urls: tuple[str, ...], db: Any) -> None:
    """Accept the page's current title of changed links: they are ok again from the next run.

    A title change found by comparing with the last check stays `changed` on every run until it
    is accepted (or the post's own title for the link says the new one).

    Example: crawler accept https://mp.weixin.qq.com/s/zEqgDh6_fnDgXEI8MC9cmg
    """
    from crawler.db import open_store, require_history

    require_history(db)
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
@enrich_options
def enrich(
    post: Path,
    db: Any,
    fresh: bool,
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

    names = ("titles", "summaries", "mark_dead", "unmark", "update_redirects", "update_titles")
    options = en.EnrichOptions(archive=kw.pop("archive"), **{n: kw.pop(n) for n in names})
    raw = en.read_post_bytes(post)
    findings: dict[str, en.Finding] = {}
    if en.uses_history(options):
        if fresh:
            from crawler.inputs import load_links
            from crawler.pipeline import RunOptions, run_check

            found = load_links((str(post),))
            progress = Progress(len(found.links), True)
            run = run_check(found, fetch_settings(kw), db, RunOptions(), progress)
            click.echo(summary_line(run))
            if run.network_down:
                raise NetworkDownError("the network looks down; nothing to enrich from")
        findings = en.history_findings(db, post, raw, options)
    if options.archive:
        findings, warning = en.with_snapshots(
            post, raw, findings, archive_endpoint, archive_before, fetch_settings(kw)
        )
        if warning:
            click.echo(warning, err=True)
    new = en.enrich_text(raw, findings, options)
    if new == raw:
        click.echo(f"{post}: nothing to change")
    elif dry_run:
        click.echo(en.unified_diff(raw, new, str(post)), nl=False)
    else:
        backup = en.write_atomic_with_backup(post, new)
        if findings:
            en.record_enrichment(db, post, new)
        changed = en.count_changed_lines(raw, new)
        lines = "line" if changed == 1 else "lines"
        click.echo(f"{post}: enriched ({changed} {lines} added or changed); backup: {backup}")


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
    from crawler.dbcopy import copy_database

    done = copy_database(source, dest)
    rows = ", ".join(f"{n} {table}" for table, n in done.rows.items())
    click.echo(
        f"copied {source} to {dest}: {rows}; counts match, {done.sampled} sampled rows equal"
    )


@cli.command()
@common_options
@input_options
@remap_option
def links(
    inputs: tuple[str, ...], include: tuple[Any, ...], exclude: tuple[Any, ...], remap: Any
) -> None:
    """List every reference found in INPUTS without fetching anything, one JSON object a line.

    Example: crawler links links.md | jq -r .url
    """
    from crawler.inputs import filter_links, load_links
    from crawler.listings import link_record
    from crawler.local import remap as remapped

    fc = click.get_current_context().find_object(FileConfig) or FileConfig()
    found = load_links(inputs, every=True).links
    found = remapped(found, remap) if remap else found
    found, _ = filter_links(found, (*fc.include, *include), (*fc.exclude, *exclude))
    for link in found:
        click.echo(json.dumps(link_record(link), ensure_ascii=False))


@cli.command("config")
@common_options
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Print the effective settings of 'crawler check' as a configuration file, each with
    where it comes from: `crawler config > crawler.toml` writes a file that reads back the same.

    Header and cookie values are secrets and never printed.

    Example: crawler --config crawler.toml config
    """
    from crawler.options import effective_config

    click.echo(effective_config(ctx, check), nl=False)


@cli.command()
@common_options
@extract_options
def extract(pages: tuple[Path, ...], url: str | None, jobs: int) -> None:
    """Print what the crawler reads from saved HTML pages, one JSON object per line.

    Lines come in the order of PAGES, whatever --jobs is.

    Example: crawler extract saved/article.html
    """
    from crawler.extract.command import run

    sys.exit(run(pages, url, jobs))


@cli.command()
@worker_options
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
    from crawler.db import require_history
    from crawler.engine import settings_from_json
    from crawler.pipeline import work_on_run

    require_history(db)
    if settings_file is not None:
        settings = settings_from_json(json.load(settings_file))
    else:
        settings = fetch_settings(kw)
    sys.exit(work_on_run(db, run_id, settings, parent, once=once))


def main() -> None:
    """Entry point: run the CLI, turning tool errors into one line and an exit code."""
    finish(lambda: cli.main(standalone_mode=False))
