"""Starting the CLI as a real process for the tests that signal it."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence


def _sigint_as_default() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # keeps an inherited SIG_IGN: a suite run from such a script would see Ctrl-C do nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Popen of `args` with Ctrl-C at its default, stdout discarded and stderr piped."""
    return subprocess.Popen(
        list(args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_sigint_as_default,  # noqa: PLW1509 - the tests start processes from one thread
    )
