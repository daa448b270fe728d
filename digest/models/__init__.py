"""The data model: plain values (``kinds``), column types (``columns``) and the
tables (``tables``, SQLAlchemy 2 typed mappings). Queries live in ``store``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digest.lazy import facade

if TYPE_CHECKING:
    from digest.models.catalog import *  # noqa: F403
else:
    # The mapped tables load at the first name asked: ``store.reading`` takes
    # the column types from ``models.columns`` without the ORM (issue 31).
    __getattr__ = facade(__name__, (p.stem for p in Path(__file__).parent.glob("*.py")))
