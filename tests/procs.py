"""Starting the CLI as a real process for the tests that signal it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence


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


def wait_while_running(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    """Wait until ready() or fail when proc ends first (with its stderr). Between looks it
    waits on the process itself, which returns the moment it exits; there is no deadline: a run
    that never gets there ends by itself, and a loaded machine only makes the wait longer."""
    while not ready():
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        if ready():
            return
        _, err = proc.communicate()
        raise AssertionError(
            f"the run ended ({proc.returncode}) before {what}: {err.decode()[-2000:]}"
        )


def wait_for_stopping(proc: subprocess.Popen[bytes]) -> bytes:
    """Read proc's stderr up to the line a worker logs (with -v) once a stop signal has reached
    it: from then on it starts no request, and a second signal stops it at once. What it said."""
    assert proc.stderr is not None
    said = b""
    while b"stopping: finishing" not in said:
        line = proc.stderr.readline()
        assert line, f"ended without stopping: {said.decode(errors='replace')}"
        said += line
    return said
