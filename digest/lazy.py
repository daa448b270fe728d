"""Packages whose names load when first asked for (PEP 562), not at import.

``store`` and ``models`` are facades: ``store.claim_deliveries`` is a function
of ``store.claims``, ``models.Delivery`` a class of ``models.tables``. Loading
every room at ``import digest.store`` made each command pay for the ORM and all
the mapped tables, though `digest status` reads its report through
``store.reading`` and ``models.columns`` alone (a third of its start-up, issue
31). Each facade's ``catalog`` module keeps the explicit list of its names (what
mypy reads); the package loads it at the first name asked.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable


def facade(package: str, rooms: Iterable[str]) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: a room by its name (``store.claims``),
    any other name from ``package.catalog`` (loading every room, once)."""
    known = frozenset(rooms)

    def lookup(name: str) -> object:
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        if name.startswith("__"):  # copy, pickle and friends probe for dunders
            raise AttributeError(name)
        catalog = importlib.import_module(f"{package}.catalog")
        if name not in catalog.__all__:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(catalog, name)
        setattr(sys.modules[package], name, value)  # asked once
        return value

    return lookup
