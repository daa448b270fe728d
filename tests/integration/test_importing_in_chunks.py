"""An import written a chunk at a time (issue 31 §2) gives what one chunk gives:
the same counts and the same readers, whatever the chunk's size, on both
backends; duplicates far apart in the file merge as adjacent ones do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.audience import importer
from digest.audience.rows import Row, address_hash
from digest.audience.subscribers import SubscriberBook
from digest.db import transaction
from digest.models import Forgotten, Subscriber, SubscriberStatus

LINES = """email,name,sections,consent_at,format
anna@example.ru,Анна,,,
boris@example.ru,,army,2026-11-20T10:00:00+03:00,
gone@example.ru,Ушедший,,,
forgot@example.ru,,,,
ANNA@Example.ru,,fleet,2026-11-21T10:00:00+03:00,text
old@example.ru,Старый,,,
bad line@example,,,,
boris@example.ru,Борис,,,
forgot@example.ru,,,,
gone@example.ru,,,,
old@example.ru,,space,,
anna@example.ru,Аня,,,
"""


def _state(factory: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with factory() as session:
        rows = session.execute(
            select(
                Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.sections,
                Subscriber.format, Subscriber.consent_at, Subscriber.confirmed_at,
            ).order_by(Subscriber.email)
        )  # fmt: skip
        return [tuple(r) for r in rows]


@pytest.mark.parametrize("chunk", [1, 2, 5, 5000])
def test_chunks_change_nothing(
    factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    book = SubscriberBook(factory, double_opt_in=True)
    book.add(Row(email="old@example.ru", name="Был", sections="army"))
    book.add(Row(email="gone@example.ru"))
    assert book.remove("gone@example.ru")
    with transaction(factory) as session:
        session.add(Forgotten(hash=address_hash("forgot@example.ru")))
    path = tmp_path / "readers.csv"
    path.write_text(LINES, encoding="utf-8")

    monkeypatch.setattr(importer, "CHUNK", chunk)
    report = book.import_csv(path)

    counts = (report.added, report.updated, report.merged, report.kept_closed, report.rejected)
    assert counts == (2, 1, 6, 2, 1), report.problems
    assert len(report.problems) == 1
    assert report.problems[0].startswith("readers.csv:8: email: 'bad line@example' is not valid")
    by_email = {row[0]: row for row in _state(factory)}
    anna = by_email["anna@example.ru"]
    # The later lines win, their blanks erase nothing; consent on the second line
    # makes the reader active even when the first line was written a chunk earlier.
    assert anna[1:5] == ("Аня", SubscriberStatus.ACTIVE, "fleet", "text")
    assert anna[6] is not None and anna[6] == anna[5]
    assert by_email["boris@example.ru"][1:4] == ("Борис", SubscriberStatus.ACTIVE, "army")
    assert by_email["old@example.ru"][1:4] == ("Старый", SubscriberStatus.PENDING, "space")
    assert by_email["gone@example.ru"][2] is SubscriberStatus.UNSUBSCRIBED
    assert "forgot@example.ru" not in by_email


def test_a_file_of_bad_lines_is_counted_in_full_and_named_in_part(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "junk.csv"
    lines = ["email"] + [f"not an address {n}" for n in range(1500)] + ["ok@example.ru"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = SubscriberBook(factory, double_opt_in=False).import_csv(path)
    assert (report.added, report.rejected) == (1, 1500)
    assert len(report.problems) == importer.KEPT
    assert report.problems[0].startswith("junk.csv:2: email:")
