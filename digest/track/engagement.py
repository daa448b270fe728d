"""Opens and clicks, privacy first: off unless a list turns them on.

At render time a tracked variant's links become ``/c/TOKEN`` and a 1×1 image
``/o/TOKEN`` is added; the token names an ``edition_link`` row (or the
edition), so a click can only ever lead to a URL the edition carried: no open
redirect. With ``individual_tracking`` each link also carries a signed reader
token (``__READER__``, spliced in per message by compose); without it nothing
in the message tells readers apart and counts are kept per edition.

Opens are approximate: some clients fetch every image on arrival (Apple Mail
Privacy Protection, Gmail's proxy), others never show images.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from digest import store
from digest.audience.lists import MailingList
from digest.compose import Placeholders
from digest.db import Factory, Session, transaction
from digest.models import Clock, EventKind, utcnow
from digest.tokens import BadToken, Keyring, LinkSigner

_LINK = re.compile(r"""(<a\b[^>]*?\bhref=)(["'])(https?://[^"'\s]+)\2""", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)
# The smallest transparent GIF: what /o/TOKEN answers.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


@dataclass(frozen=True)
class Tracker:
    """Rewrites a variant's HTML for the list's tracking settings."""

    mailing_list: MailingList
    signer: LinkSigner
    base_url: str
    placeholders: Placeholders

    def links(self, body: str) -> list[str]:
        """The URLs ``apply`` turns into tracked ones: each needs a link id first."""
        if not body or not (self.mailing_list.tracking and self.mailing_list.track_clicks):
            return []
        return [html.unescape(m.group(3)) for m in _LINK.finditer(body)]

    def apply(self, body: str, edition_id: int, link_ids: Mapping[str, int]) -> str:
        """The body with tracked links (``link_ids`` names every URL of ``links``) and
        the open pixel, as the list asks. Pure: the ids come from the store."""
        if not body or not self.mailing_list.tracking:
            return body
        reader = (
            f"/{self.placeholders.mark('READER')}" if self.mailing_list.individual_tracking else ""
        )
        base = self.base_url.rstrip("/")
        if self.mailing_list.track_clicks:

            def tracked(match: re.Match[str]) -> str:
                url = html.unescape(match.group(3))
                token = self.signer.click.sign(link_ids[url])
                return f"{match.group(1)}{match.group(2)}{base}/c/{token}{reader}{match.group(2)}"

            body = _LINK.sub(tracked, body)
        if self.mailing_list.track_opens:
            pixel = (
                f'<img src="{base}/o/{self.signer.opened.sign(edition_id)}{reader}" width="1" '
                'height="1" alt="" style="display:block;width:1px;height:1px;border:0">'
            )
            body, found = _BODY_END.subn(pixel + "</body>", body, count=1)
            if not found:
                body += pixel
        return body


@dataclass(frozen=True)
class Hit:
    """What a tracked URL named, once its tokens check out."""

    edition_id: int
    url: str | None  # None for an open
    subscriber_id: int | None


class Engagement:
    """Checks tracking tokens and records opens and clicks."""

    def __init__(
        self,
        factory: Factory,
        lists: dict[str, MailingList],
        keyring: Keyring,
        clock: Clock = utcnow,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.signers = [(lists[k], keyring.for_list(k)) for k in lists]

    def click(self, token: str, reader: str | None) -> Hit | None:
        """The link a click token names, recorded; None for a token that is not ours."""
        found = self._verified(token, lambda signer, t: signer.click.verify(t))
        if found is None:
            return None
        mailing_list, signer, link_id = found
        with transaction(self.factory) as session:
            link = store.link_by_id(session, link_id)
            if link is None:
                return None
            who = self._reader(session, mailing_list, signer, reader)
            hit = Hit(link.edition_id, link.url, who)
            self._record(session, EventKind.CLICK, hit, {"url": link.url})
            return hit

    def opened(self, token: str, reader: str | None) -> Hit | None:
        found = self._verified(token, lambda signer, t: signer.opened.verify(t))
        if found is None:
            return None
        mailing_list, signer, edition_id = found
        with transaction(self.factory) as session:
            hit = Hit(edition_id, None, self._reader(session, mailing_list, signer, reader))
            self._record(session, EventKind.OPEN, hit, None)
            return hit

    def _verified(
        self, token: str, check: Callable[[LinkSigner, str], int]
    ) -> tuple[MailingList, LinkSigner, int] | None:
        """The list whose key signed ``token``, and the id the token carries."""
        for mailing_list, signer in self.signers:
            try:
                return mailing_list, signer, check(signer, token)
            except BadToken:
                continue
        return None

    @staticmethod
    def _reader(
        session: Session, mailing_list: MailingList, signer: LinkSigner, token: str | None
    ) -> int | None:
        # Without individual tracking a reader token is ignored even if one shows up.
        if not token or not mailing_list.individual_tracking:
            return None
        try:
            key = signer.reader.verify(token)
        except BadToken:
            return None
        return store.subscriber_id_by_token(session, key)

    def _record(
        self, session: Session, kind: EventKind, hit: Hit, detail: dict[str, Any] | None
    ) -> None:
        if store.edition_exists(session, hit.edition_id):
            store.add_events(
                session,
                [
                    {
                        "kind": kind,
                        "edition_id": hit.edition_id,
                        "subscriber_id": hit.subscriber_id,
                        "at": self.clock(),
                        "detail": detail,
                    }
                ],
            )
