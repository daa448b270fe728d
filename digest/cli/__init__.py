"""The ``digest`` command: thin doors (Typer + Rich). A command parses its
arguments, calls one service and prints; ``app`` holds what they share, and one
module per command group registers its commands on import."""

from __future__ import annotations

from digest.cli import (
    demo,
    editions,
    ops,
    schedules,
    sending,
    sources,
    subscribers,
    team,
    tokens,
)
from digest.cli.app import app

__all__ = [
    "app",
    "demo",
    "editions",
    "main",
    "ops",
    "schedules",
    "sending",
    "sources",
    "subscribers",
    "team",
    "tokens",
]


def main() -> None:
    app()
