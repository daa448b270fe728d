"""The ``digest`` command: thin doors (Typer + Rich). A command parses its
arguments, calls one service and prints; ``app`` holds what they share, and one
module per command group registers its commands on import.

A command line loads the module of its first word alone (``HOMES``): the other
eight modules' imports and Typer's building of their commands were a tenth of
`digest status` (issue 31). Anything else (``--help``, ``--version``, a typo, a
global option first) loads them all, and so does ``everything()``, for what
needs the whole command (the README's check, the tests).
"""

from __future__ import annotations

import importlib
import sys

import typer

from digest.cli.app import app

# Each top-level command and group by the module that registers it
# (tests/test_house.py holds this to what the modules register).
HOMES = {
    **dict.fromkeys(("preview", "status", "approve", "special", "editions"), "editions"),
    **dict.fromkeys(("ingest", "serve", "inbound", "bounces", "doctor", "db", "dkim"), "ops"),
    **dict.fromkeys(("send", "worker", "pause", "resume", "cancel", "retry"), "sending"),
    **dict.fromkeys(("demo", "dev-relay"), "demo"),
    **dict.fromkeys(("schedules", "run", "scheduler"), "schedules"),
    "subscribers": "subscribers",
    "editors": "team",
    "tokens": "tokens",
    "sources": "sources",
}
MODULES = tuple(sorted(set(HOMES.values())))  # every one, in the order --help lists them

__all__ = ["HOMES", "MODULES", "app", "everything", "main"]


def load(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(f"digest.cli.{name}")


def everything() -> typer.Typer:
    """The whole command, every module's commands registered (``app``)."""
    load(MODULES)
    return app


def main() -> None:
    home = HOMES.get(sys.argv[1]) if len(sys.argv) > 1 else None
    load((home,) if home is not None else MODULES)
    app()
