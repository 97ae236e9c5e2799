"""The `crawler` command's entry point, and how every run of it ends: an exit code, and one
line for a failure (never a traceback).

`crawler extract PAGES` goes straight to the extract stage (crawler.extract.command): its
start-up is timed by `make eval`, and importing crawler.cli, which declares every command's
options, would cost it a third of its start, click a fifth (so this module imports neither).
Everything else goes to crawler.cli.
"""

from __future__ import annotations

import sys

from crawler.errors import CrawlerError

TYPE_CHECKING = False  # click and typing are not imported here: start-up time counts
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

EXIT_OK = 0
EXIT_TOOL = 1
EXIT_INTERRUPTED = 130


def _say(line: str) -> None:
    """One line on stderr (click.echo's where click is loaded)."""
    click = sys.modules.get("click")
    if click is not None:
        click.echo(line, err=True)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _error(message: str) -> None:
    """A tool error's line, as click shows a ClickException where click is loaded."""
    click = sys.modules.get("click")
    if click is not None:
        click.ClickException(message).show()
    else:
        _say(f"Error: {message}")


def main() -> None:
    """Entry point: `crawler extract` without the rest of the command line where it can."""
    if sys.argv[1:2] == ["extract"]:
        from crawler.extract.command import quick

        quick(sys.argv[2:])  # returns only when the arguments need the whole command line
    from crawler.cli import main as cli_main

    cli_main()


def finish(invoke: Callable[[], Any]) -> NoReturn:
    """Run a command (a click one with standalone_mode=False, or the short `crawler extract`)
    and exit: tool errors as one line and their exit code, a bug as one line (its traceback
    under -v), Ctrl-C as 130. Click's exceptions are looked for only where click is loaded."""
    try:
        rv = invoke()
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except CrawlerError as exc:  # raised where no crawler.cli group turned it into a ToolError
        _error(str(exc))
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(EXIT_TOOL)
    except Exception as exc:
        click = sys.modules.get("click")
        if click is not None and isinstance(exc, click.exceptions.Abort):
            _say("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        if click is not None and isinstance(exc, click.ClickException):
            if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
                from crawler.settings import refused  # a value: one line, as crawler.cli says it

                _error(str(refused(exc)))
                sys.exit(EXIT_TOOL)
            exc.show()
            sys.exit(exc.exit_code)
        # a bug (never a link's failure): one line, the traceback under -v
        import logging
        import traceback

        if logging.getLogger("crawler").isEnabledFor(logging.INFO):
            traceback.print_exc()
        _say(f"error: a bug: {type(exc).__name__}: {exc} (-v shows where)")
        sys.exit(EXIT_TOOL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
