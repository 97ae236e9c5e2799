"""Every command's --help and every option's environment variable, against a saved copy: the
options are declared once in crawler/options.py and shared, and a change to how they are
declared must not change what a user sees. A deliberate change of an option or a help text
updates the copy: `.venv/bin/python -m tests.test_cli_help > tests/fixtures/cli_help.txt`.
"""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from crawler.cli import cli

SAVED = Path(__file__).parent / "fixtures" / "cli_help.txt"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append((*path, name))
    return out


def _describe(path: tuple[str, ...]) -> str:
    r = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100, prog_name="crawler")
    assert r.exit_code == 0, r.output
    ctx = click.Context(cli, info_name="crawler")
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        found = cmd.get_command(ctx, name)
        assert found is not None
        cmd = found
    env = [
        f"  {p.opts[0]}: {p.envvar}"
        for p in cmd.params
        if isinstance(p, click.Option) and p.envvar is not None
    ]
    return "\n".join(
        [f"== crawler {' '.join(path)} --help".replace("  ", " "), r.output, "env:", *env]
    )


def describe_all() -> str:
    """Each command's --help output, then its options' environment variables."""
    return "\n".join(_describe(path) for path in _commands(cli)) + "\n"


def test_help_and_environment_variables_are_as_saved() -> None:
    got, saved = describe_all(), SAVED.read_text(encoding="utf-8")
    assert got.splitlines() == saved.splitlines(), f"see {__doc__}"


if __name__ == "__main__":
    print(describe_all(), end="")
