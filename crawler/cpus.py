"""The machine: its cores and whether it forks (no imports: `crawler extract -j` asks before
it starts its reading processes). crawler.config exports these too."""

from __future__ import annotations

import os
import sys


def usable_cpus() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether work may be split among forked processes here: POSIX fork, and not macOS,
    whose system frameworks are not safe to use in a forked child."""
    return hasattr(os, "fork") and sys.platform != "darwin"
