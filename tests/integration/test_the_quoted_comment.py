"""The comment a discussed article quotes in the letter: the most voted inside the
edition's window, the earlier of a tie, one per article, ranked by the database
(each variant's letter asks, and a discussed article has thousands)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from digest import store
from digest.models import Article, Comment
from tests.support.common import FIXED_NOW

START = FIXED_NOW - timedelta(days=1)


def test_the_most_voted_comment_of_the_window_the_earlier_of_a_tie_one_per_article(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session:
        first, second, quiet = (
            Article(external_id=n, url=f"https://vpk.example.ru/{n}", title=n, published_at=START)
            for n in ("a", "b", "c")
        )
        session.add_all([first, second, quiet])
        session.flush()

        def said(article: Article, number: int, hours: float, votes: int) -> None:
            at = START + timedelta(hours=hours)
            session.add(Comment(article_id=article.id, number=number, posted_at=at, votes=votes))

        said(first, 1, 1, 3)
        said(first, 2, 2, 9)  # the most voted of the window
        said(first, 3, 30, 50)  # after the window: never
        said(first, 4, -1, 80)  # before it: never
        said(second, 1, 5, 7)  # a tie: the earlier
        said(second, 2, 3, 7)
        said(second, 3, 4, 7)
        said(quiet, 1, 26, 1)  # only outside the window: nothing quoted
        session.commit()
        ids = [first.id, second.id, quiet.id, first.id]
        top = store.top_comments(session, ids, START, START + timedelta(days=1))
        quoted = {article: (c.number, c.votes) for article, c in top.items()}
    assert quoted == {first.id: (2, 9), second.id: (2, 7)}
