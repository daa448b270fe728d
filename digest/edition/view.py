"""An edition as the templates see it (``EditionView``); the public archive's page
of it is ``edition.archive``'s."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from digest import store
from digest.db import Session
from digest.errors import EmptyEdition
from digest.models import Block, Edition, EditionItem
from digest.models.tables import Comment
from digest.render import (
    ArticleView,
    CommentView,
    EditionView,
    date_long,
    date_plain,
    render_subject,
)
from digest.schedule.files import Schedule

if TYPE_CHECKING:
    from digest.toolkit import Toolkit


def edition_view(
    tools: Toolkit, session: Session, schedule: Schedule, edition: Edition
) -> EditionView:
    """The edition as the templates see it, from its stored items: withdrawn
    articles left out (the first of the day's list leads if the lead was)."""
    items = [i for i in sorted(edition.items, key=lambda i: i.position) if live(i)]
    if not items:
        raise EmptyEdition(f"{edition.label}: every article in it was withdrawn")
    first = next((i for i in items if i.block is Block.LEAD), None)
    first = first or next((i for i in items if i.block is Block.DAY), items[0])
    talked = [i.article_id for i in items if i.discussed or i.block is Block.DISCUSSED]
    top = store.top_comments(session, talked, edition.window_start, edition.window_end)
    people = store.commenters(session, talked, edition.window_start, edition.window_end)

    def article(item: EditionItem) -> ArticleView:
        return article_view(item, top.get(item.article_id), people.get(item.article_id, 0))

    lead = article(first)
    day = [article(i) for i in items if i.block is Block.DAY and i is not first]
    discussed = [article(i) for i in items if i.block is Block.DISCUSSED and i is not first]
    mailing_list = tools.mailing_list(schedule)
    variables: dict[str, str | int] = {
        "date": date_plain(edition.edition_date),
        "date_long": date_long(edition.edition_date),
        "site_name": tools.settings.site_name,
        "lead_title": lead.title,
        "articles": 1 + len(day),
    }
    view = EditionView(
        site_name=tools.settings.site_name,
        site_url=tools.settings.site_url,
        list_name=mailing_list.name,
        list_description=mailing_list.description,
        edition_date=edition.edition_date,
        window_days=schedule.window.days,
        subject=edition.custom_subject or render_subject(schedule.mail.subject, variables),
        preheader="",  # made below from the template, as each variant's is
        preheader_template=schedule.mail.preheader,
        preheader_values=tuple(
            (k, v) for k, v in variables.items() if k not in ("lead_title", "articles")
        ),
        lead=lead,
        day=day,
        discussed=discussed,
        zone=schedule.zone,
        intro=edition.intro,
        archive_url="" if edition.number else archive_url(tools, edition),
        special=edition.number > 0,
    )
    return replace(view, preheader=view.own_preheader())


def live(item: EditionItem) -> bool:
    """Not withdrawn by the site since it was chosen."""
    return item.article.withdrawn_at is None


def article_view(item: EditionItem, top: Comment | None, commenters: int) -> ArticleView:
    """One stored item as the templates see it (``top``: its most voted comment)."""
    a = item.article
    return ArticleView(
        id=a.id,
        title=a.title,
        url=a.url,
        lead=a.lead or "",
        section=a.section.slug if a.section else "",
        section_title=a.section.title if a.section else "Новости",
        section_position=a.section.position if a.section else 10_000,
        published_at=a.published_at,
        views=a.views,
        image_url=a.image_url,
        image_caption=a.image_caption if a.image_caption else None,
        discussed=item.discussed or item.block is Block.DISCUSSED,
        comments_in_window=item.comments_in_window,
        comments_total=item.comments_total,
        commenters=commenters,
        top_comment=(
            CommentView(top.author or "аноним", top.body, top.votes)
            if top is not None and top.body
            else None
        ),
    )


def archive_url(tools: Toolkit, edition: Edition) -> str:
    """The public page of the edition: «Открыть в браузере»."""
    base = tools.settings.base_url.rstrip("/")
    return f"{base}/archive/{edition.schedule}/{edition.edition_date.isoformat()}"
