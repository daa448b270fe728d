"""A command's own time and peak RSS, taken by a small process that starts it.

Linux counts a child's memory from before its ``exec`` in its ``ru_maxrss``, and
Python starts children with ``vfork``: a command started by a bench that has
grown (a million-line CSV written, a million-row page read in process) was
reported at the bench's size, not its own (`bench/million.py`'s import read
1.24-1.36× its 10 000-reader figure that way; started alone, 1.00×). A small
Python process starts the command and reports its wall time, peak RSS and exit
code on its stdout, as ``/usr/bin/time`` would."""

from __future__ import annotations

import os
import subprocess  # nosec B404: the commands under measurement, fixed arguments
import sys
from typing import IO, Any

_STARTER = """
import os, sys, time
started = time.perf_counter()
out = [(os.POSIX_SPAWN_OPEN, 1, sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=out)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def start(
    argv: list[str], env: dict[str, str], stderr: IO[Any] | int, stdout: str = os.devnull
) -> subprocess.Popen[str]:
    """``argv`` (its first item a path) started by the small process; its stdout
    to the file ``stdout`` (nowhere unless named), its stderr to ``stderr``."""
    return subprocess.Popen(  # nosec B603
        [sys.executable, "-c", _STARTER, stdout, *argv], env=env, stdout=subprocess.PIPE,
        stderr=stderr, text=True,
    )  # fmt: skip


def outcome(proc: subprocess.Popen[str]) -> tuple[float, float, int]:
    """(seconds from exec to exit, peak RSS in MB, exit code) of a started command."""
    out, _ = proc.communicate()
    seconds, rss_kb, code = out.split()
    return float(seconds), int(rss_kb) / 1024, int(code)
