"""The process of the ``digest`` command and of ``python -m digest``."""

from __future__ import annotations

import gc


def main() -> None:
    # A command's start-up makes a few hundred thousand objects (its modules,
    # SQLAlchemy's and pydantic's classes) and keeps every one: the cyclic
    # collector's passes over them find nothing and were a tenth of a `digest
    # status` (issue 31). It stays off until the command wires its services
    # (``cli.app.wire``), which may run for hours and turns it back on.
    gc.disable()
    from digest.cli import main as run

    run()


if __name__ == "__main__":
    main()
