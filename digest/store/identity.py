"""Which database this is (issue 32): the identity made with the schema."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import DatabaseIdentity, utcnow


def database_identity(session: Session) -> str:
    """The database's identity; made now if the row is missing (a schema made
    without the migrations), the first of two racing makers winning."""
    found = session.scalar(select(DatabaseIdentity.identity).where(DatabaseIdentity.id == 1))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            session.add(DatabaseIdentity(id=1, identity=str(uuid.uuid4()), created_at=utcnow()))
    except IntegrityError:
        pass  # another process made it meanwhile: theirs is the one
    return str(session.scalar(select(DatabaseIdentity.identity).where(DatabaseIdentity.id == 1)))
