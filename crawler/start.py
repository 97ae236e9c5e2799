"""The `crawler` command's entry point, and how every run of it ends: an exit code, and one
line for a failure (never a traceback).

`crawler extract PAGES` goes straight to the extract stage (crawler.extract.command): its
start-up is timed by `make eval`, and importing crawler.cli, which declares every command's
options, would cost it a third of its start. Everything else goes to crawler.cli.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from crawler.errors import CrawlerError

EXIT_OK = 0
EXIT_TOOL = 1
EXIT_INTERRUPTED = 130


class ToolError(click.ClickException):
    """A CrawlerError as Click shows it: one line, the error's own exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


def main() -> None:
    """Entry point: `crawler extract` without the rest of the command line where it can."""
    if sys.argv[1:2] == ["extract"]:
        from crawler.extract.command import quick

        quick(sys.argv[2:])  # returns only when the arguments need the whole command line
    from crawler.cli import main as cli_main

    cli_main()


def finish(invoke: Callable[[], Any]) -> NoReturn:
    """Run a click command (standalone_mode=False) and exit: tool errors as one line and
    their exit code, a bug as one line (its traceback under -v), Ctrl-C as 130."""
    try:
        rv = invoke()
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except CrawlerError as exc:  # raised where no crawler.cli group turned it into a ToolError
        ToolError(str(exc), exc.exit_code).show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
            from crawler.settings import refused  # a value: one line, as crawler.cli says it

            exc = ToolError(str(refused(exc)), EXIT_TOOL)
        exc.show()
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
