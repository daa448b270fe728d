"""The only SQL: named queries, each running unchanged on SQLite and PostgreSQL.

Callers write ``store.claim_deliveries(session, …)``; the rooms below hold them
by noun. Nothing outside this package, ``db`` and ``models`` imports SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digest.lazy import facade

if TYPE_CHECKING:
    from digest.store.catalog import *  # noqa: F403
else:
    # The rooms load at the first name asked, not at `import digest.store`:
    # `digest status` reads its report through ``store.reading`` alone (issue 31).
    __getattr__ = facade(__name__, (p.stem for p in Path(__file__).parent.glob("*.py")))
