"""Starting the CLI as a real process for the tests that signal it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator, Sequence


def _sigint_as_default() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # keeps an inherited SIG_IGN: a suite run from such a script would see Ctrl-C do nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def running_cli(args: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """The CLI as a process (Ctrl-C at its default, stdout discarded, stderr piped); on leaving,
    killed if still running and always reaped, so no process or pipe outlives the test."""
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_sigint_as_default,  # noqa: PLW1509 - the tests start processes from one thread
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=20)
