"""Builders of plain values for the pure stages (no database needed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from digest.render import ArticleView, CommentView, EditionView

MOSCOW = ZoneInfo("Europe/Moscow")
BASE = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def article(n: int, **fields: Any) -> ArticleView:
    section = fields.pop("section", ["армия", "флот", "авиация"][n % 3])
    values: dict[str, Any] = {
        "id": n,
        "title": f"Новость номер {n}",
        "url": f"https://vpk.example.ru/news/{n}.html",
        "lead": f"Вводный абзац новости {n}: что случилось и почему это важно.",
        "section": section,
        "section_title": section.capitalize(),
        "section_position": ["армия", "флот", "авиация"].index(section)
        if section in ("армия", "флот", "авиация")
        else 9,
        "published_at": BASE - timedelta(hours=n),
        "views": 100 * n,
    }
    values.update(fields)
    return ArticleView(**values)


def edition(day: int = 6, discussed: int = 3, **fields: Any) -> EditionView:
    lead = article(
        0,
        image_url="https://vpk.example.ru/img/0.jpg",
        image_caption="Подпись к фото. Источник: пресс-служба.",
    )
    values: dict[str, Any] = {
        "site_name": "Новости ВПК",
        "site_url": "https://vpk.example.ru",
        "list_name": "Новости ВПК",
        "list_description": "ежедневная рассылка новостей ВПК",
        "edition_date": date(2026, 11, 25),
        "window_days": 1,
        "subject": "Новости ВПК за 25 ноября 2026",
        "preheader": "Главное за сутки",
        "lead": lead,
        "day": [article(n) for n in range(1, day + 1)],
        "discussed": [
            article(
                100 + n,
                discussed=True,
                comments_in_window=n + 1,
                comments_total=10 * n + 1,
                top_comment=CommentView("штурм", f"Комментарий {n}", n),
            )
            for n in range(discussed)
        ],
        "zone": MOSCOW,
    }
    values.update(fields)
    return EditionView(**values)


def with_lead(view: EditionView, **fields: Any) -> EditionView:
    return replace(view, lead=replace(view.lead, **fields))
