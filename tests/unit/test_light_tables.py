"""``store.light`` describes, for SQLAlchemy Core alone, the columns the reports
read (issue 31: `digest status` without the ORM). The schema is the mapped
tables'; each column here must be one of theirs, with the same type, so a
report never reads a column that was renamed or a value it would misread."""

from __future__ import annotations

import pytest
from sqlalchemy import Enum, Integer, String, column, table
from sqlalchemy.sql import TableClause

from digest.models import Base
from digest.store.light import TABLES


def mismatches(light: TableClause) -> list[str]:
    """What ``light`` says that the mapped table does not."""
    mapped = Base.metadata.tables[light.name]
    found = []
    for col in light.columns:
        if col.name not in mapped.columns:
            found.append(f"{light.name}.{col.name}: not in the schema")
            continue
        theirs = mapped.columns[col.name].type
        if type(col.type) is not type(theirs):
            found.append(f"{light.name}.{col.name}: {col.type!r}, the schema's {theirs!r}")
        elif isinstance(theirs, Enum) and getattr(col.type, "enum_class", None) is not (
            theirs.enum_class
        ):  # a status read back as its kind, not as text
            found.append(f"{light.name}.{col.name}: another enum")
    return found


@pytest.mark.parametrize("light", TABLES, ids=[t.name for t in TABLES])
def test_each_column_a_report_reads_is_the_mapped_tables_own(light: TableClause) -> None:
    assert mismatches(light) == []


def test_a_renamed_column_or_another_type_is_caught() -> None:
    wrong = table("delivery", column("delivered_by", Integer), column("status", String))

    assert len(mismatches(wrong)) == 2
