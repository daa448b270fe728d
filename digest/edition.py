"""An edition's life: select → store items → render variants → enqueue → send → finish.

This is the orchestration that ``cli`` (and later the scheduler and the web
desk) call; each step delegates to its stage. A draft edition is refreshed
every time it is built (new articles arrive during the day); once sending
starts its content is frozen, so a resumed send sends the same bytes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest import queries
from digest.compose import (
    Composer,
    EditionMail,
    Message,
    MessageTemplate,
    Placeholders,
    Recipient,
)
from digest.config import Settings, SmtpTarget
from digest.confirm import Invitations
from digest.db import transaction
from digest.engagement import Tracker
from digest.errors import ComposeError, ConfigError, EditionError, EmptyEdition, RenderError
from digest.lists import MailingList, get_list
from digest.models import (
    Block,
    DeliveryStatus,
    Edition,
    EditionItem,
    EditionStatus,
    EditionVariant,
)
from digest.render import (
    ArticleView,
    CommentView,
    EditionView,
    Rendered,
    Renderer,
    date_long,
    date_plain,
    parse_section_key,
    parse_variant_key,
    render_subject,
    shorten,
    variant_key,
)
from digest.schedule import Schedule, load_schedule
from digest.select import Pick, Selection, select_edition
from digest.send import (
    Connection,
    DomainGate,
    Progress,
    RelayPool,
    RunResult,
    SendOptions,
    SendRun,
    Single,
    connector,
    run_async,
    send_each,
)
from digest.signing import DkimSigner, Signer, dkim_keys
from digest.tokens import LinkSigner
from digest.track import DeliveryStore, RetryPolicy, SoftBouncePolicy

log = logging.getLogger(__name__)
PREHEADER_LIMIT = 100
GIVE_UP_MARGIN = timedelta(minutes=5)
TEST_PREFIX = "[ТЕСТ] "
SAMPLE = Recipient(subscriber_id=0, email="reader@example.ru", name="Читатель", token_key="preview")


@dataclass
class Pipeline:
    """Everything the stages need, built once at an entry point."""

    settings: Settings
    factory: sessionmaker[Session]
    clock: Callable[[], datetime]
    renderer: Renderer = field(init=False)
    placeholders: Placeholders = field(init=False)
    _dkim: DkimSigner | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # One stem for every slot this installation renders and composes (the key is
        # read on first use, so commands that never render need none).
        self.placeholders = Placeholders(self.settings.signing_key)
        self.renderer = Renderer(self.settings.templates_dir, self.placeholders)

    def schedule(self, name: str) -> Schedule:
        return load_schedule(self.settings.schedules_dir, name, self.settings.timezone)

    def mailing_list(self, schedule: Schedule) -> MailingList:
        return get_list(self.settings.subscribers_dir, schedule.list)

    def tracker(self, schedule: Schedule) -> Tracker:
        mailing_list = self.mailing_list(schedule)
        signer = LinkSigner(self.settings.signing_key(), mailing_list.key)
        return Tracker(mailing_list, signer, self.settings.base_url, self.placeholders)

    def composer(self, schedule: Schedule) -> Composer:
        return self.list_composer(self.mailing_list(schedule))

    def list_composer(self, mailing_list: MailingList) -> Composer:
        if not self.settings.base_url.startswith("https://"):
            log.warning(
                "DIGEST_BASE_URL %s is not https: Gmail and Yahoo will not offer one-click "
                "unsubscribe (RFC 8058)",
                self.settings.base_url,
            )
        return Composer(
            sender=self.settings.sender,
            mailing_list=mailing_list,
            signer=LinkSigner(self.settings.signing_key(), mailing_list.key),
            base_url=self.settings.base_url,
            feedback_sender_id=self.settings.feedback_sender_id,
            clock=self.clock,
            placeholders=self.placeholders,
            envelope_from=self.settings.return_path,
            verp=self.settings.verp,
        )

    # -- building ---------------------------------------------------------------

    def build(self, schedule: Schedule, edition_date: date) -> Edition:
        """The edition for (schedule, date): created or refreshed while a draft,
        returned as stored once it is approved or sending. Raises EmptyEdition."""
        try:
            return self._build(schedule, edition_date)
        except IntegrityError:
            # Another process made the same edition first; the unique key on
            # (schedule, date) is the arbiter, so take theirs.
            return self._build(schedule, edition_date)

    def _build(self, schedule: Schedule, edition_date: date) -> Edition:
        with transaction(self.factory) as session:
            edition = queries.edition_for(session, schedule.name, edition_date, lock=True)
            if edition is None or (
                edition.status is EditionStatus.DRAFT and edition.shaped_at is None
            ):
                edition = self._select(session, schedule, edition_date, edition)
                self._render(session, schedule, edition, refresh=True)
            elif edition.status is EditionStatus.DRAFT:
                # An editor shaped it: their selection stays, new readers' variants come.
                self._render(session, schedule, edition, refresh=True)
            else:
                self._render(session, schedule, edition, refresh=False)
            return edition

    def _select(
        self, session: Session, schedule: Schedule, edition_date: date, edition: Edition | None
    ) -> Edition:
        start, end = schedule.bounds(edition_date)
        spec = schedule.select
        day = queries.day_candidates(session, start, end)
        talk = queries.discussions(session, start, end, end - timedelta(days=spec.lookback_days))
        ids = {c.id for c in day} | {d.article.id for d in talk}
        sent = queries.already_sent(session, schedule.name, edition_date, ids, end)
        try:
            selection = select_edition(day, talk, spec, window_end=end, already_sent=sent)
        except EmptyEdition as exc:
            window = schedule.describe_window(edition_date)
            raise EmptyEdition(f"{schedule.name}/{edition_date}: {exc} ({window})") from None
        if selection.skipped_repeats:
            log.info(
                "%s/%s: %d article(s) of the window went out in an earlier edition; not repeated",
                schedule.name,
                edition_date,
                len(selection.skipped_repeats),
            )
        if edition is None:
            edition = self.new_edition(session, schedule, edition_date)
        else:
            session.execute(delete(EditionItem).where(EditionItem.edition_id == edition.id))
            session.execute(delete(EditionVariant).where(EditionVariant.edition_id == edition.id))
            session.expire(edition, ["items", "variants"])
            edition.window_start, edition.window_end = start, end
        session.flush()
        self._store_items(session, edition, selection)
        return edition

    def new_edition(
        self,
        session: Session,
        schedule: Schedule,
        edition_date: date,
        status: EditionStatus = EditionStatus.DRAFT,
    ) -> Edition:
        start, end = schedule.bounds(edition_date)
        edition = Edition(
            schedule=schedule.name,
            edition_date=edition_date,
            window_start=start,
            window_end=end,
            created_at=self.clock(),
            status=status,
        )
        session.add(edition)
        return edition

    def _store_items(self, session: Session, edition: Edition, selection: Selection) -> None:
        blocks: list[tuple[Block, Pick]] = [
            (Block.LEAD, selection.lead),
            *((Block.DAY, p) for p in selection.day),
            *((Block.DISCUSSED, p) for p in selection.discussed),
        ]
        for position, (block, pick) in enumerate(blocks):
            session.add(
                EditionItem(
                    edition_id=edition.id,
                    article_id=pick.article.id,
                    block=block,
                    position=position,
                    discussed=pick.discussed,
                    comments_in_window=pick.comments_in_window,
                    comments_total=pick.comments_total,
                )
            )
        session.flush()
        session.refresh(edition, ["items"])

    def view(self, session: Session, schedule: Schedule, edition: Edition) -> EditionView:
        """The edition as the templates see it, from its stored items."""
        items = sorted(edition.items, key=lambda i: i.position)
        talked = [i.article_id for i in items if i.discussed or i.block is Block.DISCUSSED]
        top = queries.top_comments(session, talked, edition.window_start, edition.window_end)

        def article(item: EditionItem) -> ArticleView:
            a = item.article
            c = top.get(a.id)
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
                top_comment=(
                    CommentView(c.author or "аноним", c.body, c.votes)
                    if c is not None and c.body
                    else None
                ),
            )

        lead = next(article(i) for i in items if i.block is Block.LEAD)
        day = [article(i) for i in items if i.block is Block.DAY]
        discussed = [article(i) for i in items if i.block is Block.DISCUSSED]
        mailing_list = self.mailing_list(schedule)
        variables = {
            "date": date_plain(edition.edition_date),
            "date_long": date_long(edition.edition_date),
            "site_name": self.settings.site_name,
            "lead_title": lead.title,
            "articles": 1 + len(day),
        }
        return EditionView(
            site_name=self.settings.site_name,
            site_url=self.settings.site_url,
            list_name=mailing_list.name,
            list_description=mailing_list.description,
            edition_date=edition.edition_date,
            window_days=schedule.window.days,
            subject=edition.custom_subject or render_subject(schedule.mail.subject, variables),
            preheader=shorten(render_subject(schedule.mail.preheader, variables), PREHEADER_LIMIT),
            lead=lead,
            day=day,
            discussed=discussed,
            zone=schedule.zone,
            intro=edition.intro,
            archive_url=self.archive_url(edition),
        )

    def archive_url(self, edition: Edition) -> str:
        """The public page of the edition: «Открыть в браузере»."""
        base = self.settings.base_url.rstrip("/")
        return f"{base}/archive/{edition.schedule}/{edition.edition_date.isoformat()}"

    def archive_page(self, schedule: Schedule, edition: Edition) -> str:
        """The edition as a web page: every section, nobody's links, no tracking."""
        with self.factory() as session:
            current = session.get(Edition, edition.id)
            assert current is not None
            view = replace(self.view(session, schedule, current), archive=True)
            view = replace(view, subject=current.subject or view.subject)
        page = self.renderer.render(view, schedule.mail.template).html
        if self.placeholders.stem in page:
            # A public page: no slot may reach it (the secret stem keeps slots ours).
            raise RenderError(f"{edition.label}: the template puts a reader's slot in the archive")
        return page

    def rerender(self, session: Session, schedule: Schedule, edition: Edition) -> None:
        """Render every variant again from the stored items (an editor changed them)."""
        self._render(session, schedule, edition, refresh=True)

    def _render(
        self, session: Session, schedule: Schedule, edition: Edition, *, refresh: bool
    ) -> None:
        """Render one variant per distinct (sections, format) choice of the active
        subscribers (and the full edition, for previews). premailer runs once per
        section choice: the text-only variant reuses the text of its HTML twin."""
        have = {v.key: v for v in queries.variants(session, edition.id)}
        wanted = {"", *queries.active_variant_keys(session, schedule.frequency)}
        missing = sorted(wanted if refresh else wanted - set(have))
        if not missing:
            return
        full = self.view(session, schedule, edition)
        if refresh:
            edition.subject, edition.preheader = full.subject, full.preheader
        else:
            # Frozen: a later variant keeps the subject the first messages went out with,
            # even if the schedule file's template changed since.
            full = replace(full, subject=edition.subject, preheader=edition.preheader)
        tracker = self.tracker(schedule)
        rendered: dict[str, tuple[Rendered, int] | None] = {}
        for key in missing:
            sections, text_only = parse_variant_key(key)
            if sections not in rendered:
                view = full.for_sections(parse_section_key(sections))
                rendered[sections] = (
                    None
                    if view is None
                    else (self.renderer.render(view, schedule.mail.template), view.articles)
                )
            variant = have.get(key) or EditionVariant(edition_id=edition.id, key=key)
            done = rendered[sections]
            if done is None:
                variant.html, variant.text, variant.articles, variant.render_ms = "", "", 0, 0.0
            else:
                result, variant.articles = done
                variant.html = (
                    ""
                    if text_only
                    else tracker.apply(
                        result.html,
                        edition.id,
                        lambda url: queries.link_id(session, edition.id, url),
                    )
                )
                variant.text = result.text
                variant.render_ms = result.render_ms
            variant.preheader = full.preheader
            session.add(variant)
            log.info(
                "rendered variant %r of %s: %d articles, %d bytes of HTML, %.0f ms",
                key,
                edition.label,
                variant.articles,
                len(variant.html.encode()),
                variant.render_ms,
                extra={"edition": edition.id},
            )
        session.flush()

    # -- sending ----------------------------------------------------------------

    def start_sending(self, schedule: Schedule, edition: Edition) -> int:
        """Freeze the edition and give every active subscriber a delivery row.
        Returns how many rows were added (0 on a re-run that finds nobody new)."""
        if edition.status is EditionStatus.CANCELLED:
            raise EditionError(f"{edition.label} was cancelled")
        added = 0
        with transaction(self.factory) as session:
            # Locked: a second scheduler starting the same edition waits, then finds
            # the rows made and adds none (the unique delivery key never fires).
            current = session.get(Edition, edition.id, with_for_update=True)
            assert current is not None
            # A sent edition reopens for subscribers who joined since; finish() closes it.
            if current.status in (EditionStatus.DRAFT, EditionStatus.APPROVED, EditionStatus.SENT):
                current.status = EditionStatus.SENDING
            for _ in range(2):
                added += queries.enqueue_deliveries(
                    session, current.id, self.clock(), schedule.frequency
                )
                if not queries.unqueued_active_subscribers(session, current.id, schedule.frequency):
                    break
                # Someone chose new sections since the variants were rendered.
                self._render(session, schedule, current, refresh=False)
            if schedule.send.local_time:
                queries.set_waves(
                    session, current.id, schedule.timezone, self.waves(session, schedule, current)
                )
            edition.status = current.status
        return added

    def waves(self, session: Session, schedule: Schedule, edition: Edition) -> dict[str, datetime]:
        """``local_time``: each zone's readers get the edition at the schedule's
        time of day in their own zone, on the edition's date."""
        zones = queries.audience_zones(session, schedule.frequency, schedule.timezone)
        return {zone: schedule.local_send_time(edition.edition_date, zone) for zone in zones}

    def templates(
        self, schedule: Schedule, edition: Edition, composer: Composer, subject_prefix: str = ""
    ) -> dict[int, MessageTemplate]:
        with self.factory() as session:
            stored = queries.variants(session, edition.id)
            subject = session.get(Edition, edition.id).subject  # type: ignore[union-attr]
        mail = EditionMail(edition.id, schedule.name, edition.edition_date, subject)
        return {
            v.id: composer.template(mail, v.html, v.text, subject_prefix=subject_prefix)
            for v in stored
            if v.articles > 0
        }

    def send_run(
        self,
        schedule: Schedule,
        edition: Edition,
        connect: Callable[[SmtpTarget], Connection],
        *,
        worker: str,
        relays: RelayPool | None = None,
        gate: DomainGate | None = None,
        limit: int | None = None,
        wait: bool = False,
        progress: Progress | None = None,
    ) -> SendRun:
        """A send of the edition's due deliveries, set up from the settings. Pass the
        same ``relays`` and ``gate`` to successive runs so what they learned holds."""
        cfg = self.settings
        composer = self.composer(schedule)
        templates = self.templates(schedule, edition, composer)

        def compose(claim: queries.Claim) -> Message:
            template = templates.get(claim.variant_id or -1)
            if template is None:
                raise ComposeError(f"delivery {claim.delivery_id}: no rendered variant")
            return composer.message(
                template,
                Recipient(
                    claim.subscriber_id, claim.email, claim.name, claim.token_key, claim.delivery_id
                ),
            )

        store = DeliveryStore(
            self.factory,
            edition.id,
            worker,
            lease=timedelta(seconds=cfg.claim_lease),
            soft_bounces=SoftBouncePolicy(cfg.soft_bounce_limit, cfg.soft_bounce_days),
        )
        options = SendOptions(
            connections=cfg.smtp_connections,
            batch_size=cfg.batch_size,
            limit=limit,
            wait=wait,
            retry=RetryPolicy(
                cfg.retry_steps,
                cfg.retry_jitter,
                timedelta(seconds=cfg.give_up_after),
                greylist=cfg.greylist_delay,
            ),
            edition_deadline=self.give_up_deadline(edition),
            rate=cfg.smtp_rate,
        )
        return SendRun(
            store,
            compose,
            connect,
            relays or self.relay_pool(),
            clock=self.clock,
            options=options,
            gate=gate or self.domain_gate(),
            progress=progress,
            sign=self.dkim_signer().sign if cfg.dkim_key_file else None,
        )

    def invitations(self, mailing_list: MailingList) -> Invitations:
        return Invitations(
            self.settings, mailing_list, self.renderer, self.list_composer(mailing_list), self.clock
        )

    def send_test(self, schedule: Schedule, edition: Edition, to: str) -> Single:
        """One copy to ``to``, «[ТЕСТ]» in the subject, signed like the real thing;
        not a delivery: no subscriber's counts change."""
        message = self.preview(schedule, edition, to, subject_prefix=TEST_PREFIX, copy=True)
        if not self.settings.relays:
            raise ConfigError("DIGEST_SMTP_URL is not set: say where to send (smtp://host:port)")
        connection = connector(self.settings)(self.settings.relays[0])
        (result,) = run_async(send_each(connection, [message], self.signing_step()))
        return result

    def signing_step(self) -> Callable[[bytes], bytes] | None:
        """DKIM for the odd single message (test copy, confirmation), in process."""
        keys = dkim_keys(self.settings)
        return Signer(keys).sign if keys else None

    def dkim_signer(self) -> DkimSigner:
        """One pool of signing processes per pipeline, started on first use."""
        if self._dkim is None:
            self._dkim = DkimSigner(dkim_keys(self.settings))
            atexit.register(self._dkim.close)
        return self._dkim

    def relay_pool(self) -> RelayPool:
        cfg = self.settings
        return RelayPool(
            cfg.relays, cooldown=cfg.relay_cooldown, outage_limit=cfg.relay_outage_limit
        )

    def domain_gate(self) -> DomainGate:
        cfg = self.settings
        return DomainGate(
            pause=cfg.domain_pause,
            max_pause=cfg.domain_max_pause,
            cohort=cfg.domain_failed_cohort,
            connections=cfg.smtp_connections,
            caps=cfg.caps,
        )

    @staticmethod
    def give_up_deadline(edition: Edition) -> datetime:
        """MAIL-RULES 25: retries of an edition end before the next one is built
        (one window after this one's end), whatever DIGEST_GIVE_UP_AFTER says."""
        return edition.window_end + (edition.window_end - edition.window_start) - GIVE_UP_MARGIN

    def finish(self, edition: Edition) -> EditionStatus:
        """Mark the edition sent once no delivery is left to try."""
        with transaction(self.factory) as session:
            current = session.get(Edition, edition.id)
            assert current is not None
            counts = queries.delivery_counts(session, edition.id)
            open_ = sum(counts.get(s, 0) for s in DeliveryStatus if not s.final)
            if open_ == 0 and current.status is EditionStatus.SENDING:
                current.status = EditionStatus.SENT
                current.sent_at = self.clock()
            edition.status, edition.sent_at = current.status, current.sent_at
            return current.status

    # -- ops levers ---------------------------------------------------------------

    def approve(self, edition: Edition, approved: bool = True) -> EditionStatus:
        """Approve a draft, or take the approval back until sending starts."""
        with transaction(self.factory) as session:
            current = session.get(Edition, edition.id)
            assert current is not None
            wanted, other = (
                (EditionStatus.APPROVED, EditionStatus.DRAFT)
                if approved
                else (EditionStatus.DRAFT, EditionStatus.APPROVED)
            )
            if current.status not in (wanted, other):
                raise EditionError(f"{edition.label} is {current.status}: too late to change")
            current.status = wanted
            edition.status = wanted
            return wanted

    def pause(self, edition: Edition) -> None:
        """Running senders stop claiming within a heartbeat (about a second)."""
        with transaction(self.factory) as session:
            current = self._sendable(session, edition)
            if current.paused_at is None:
                current.paused_at = self.clock()

    def resume(self, edition: Edition) -> None:
        with transaction(self.factory) as session:
            current = self._sendable(session, edition)
            current.paused_at = None
            if current.status is EditionStatus.SENT:
                current.status = EditionStatus.SENDING

    def cancel(self, edition: Edition) -> int:
        """Stop the edition for good: running senders stop, what is not sent is
        suppressed (as they hand back their claims, the rest follows)."""
        with transaction(self.factory) as session:
            current = self._sendable(session, edition)
            current.status = EditionStatus.CANCELLED
            return queries.cancel_pending(session, edition.id, self.clock())

    def retry(self, edition: Edition, *, failed: bool = False) -> int:
        """Deferred (and with ``failed`` failed) deliveries go back to the queue, due
        now. Bounced ones never do: the address is dead."""
        states = [DeliveryStatus.DEFERRED] + ([DeliveryStatus.FAILED] if failed else [])
        with transaction(self.factory) as session:
            current = self._sendable(session, edition)
            n = queries.requeue(session, edition.id, states, self.clock())
            if n and current.status is EditionStatus.SENT:
                current.status = EditionStatus.SENDING
                current.sent_at = None
            return n

    @staticmethod
    def _sendable(session: Session, edition: Edition) -> Edition:
        current = session.get(Edition, edition.id)
        assert current is not None
        if current.status is EditionStatus.CANCELLED:
            raise EditionError(f"{current.label} was cancelled")
        if current.status in (EditionStatus.DRAFT, EditionStatus.APPROVED):
            raise EditionError(f"{current.label} is a {current.status}: nothing is being sent")
        return current

    async def work(
        self,
        connect: Callable[[SmtpTarget], Connection],
        *,
        worker: str,
        once: bool,
        stop: asyncio.Event,
        on_run: Callable[[SendRun | None], None] = lambda run: None,
    ) -> WorkReport:
        """``digest worker``: send every sending edition's due deliveries, sharing the
        work with other workers through the claims. ``once``: drain what is due now
        and return; otherwise poll until ``stop`` is set."""
        relays, gate = self.relay_pool(), self.domain_gate()
        report = WorkReport()
        schedules: dict[str, Schedule] = {}
        while not stop.is_set():
            with self.factory() as session:
                editions = queries.sending_editions(session)
            claimed = 0
            for edition in editions:
                if stop.is_set():
                    break
                if edition.schedule not in schedules:
                    schedules[edition.schedule] = self.schedule(edition.schedule)
                schedule = schedules[edition.schedule]
                run = self.send_run(
                    schedule, edition, connect, worker=worker, relays=relays, gate=gate
                )
                on_run(run)
                result = await run.run()
                on_run(None)
                claimed += result.claimed
                report.add(edition.label, result)
                self.finish(edition)
                if result.aborted:
                    report.aborted = result.aborted
                    return report
            if claimed:
                continue
            if once:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.worker_poll)
        return report

    # -- looking without sending --------------------------------------------------

    def preview(
        self,
        schedule: Schedule,
        edition: Edition,
        email: str | None = None,
        subject_prefix: str = "",
        variant_key_: str | None = None,
        *,
        copy: bool = False,
    ) -> Message:
        """Exactly the message a subscriber (or a sample reader) would get;
        ``variant_key_`` picks a variant by key for the sample reader. A ``copy``
        (a test copy) has its own Message-ID and no reader's return path."""
        composer = self.composer(schedule)
        with self.factory() as session:
            subscriber = queries.subscriber_by_email(session, email) if email else None
            key = variant_key(subscriber.sections, subscriber.format) if subscriber else ""
            key = variant_key_ if variant_key_ is not None and subscriber is None else key
            variant = next((v for v in queries.variants(session, edition.id) if v.key == key), None)
            subject = session.get(Edition, edition.id).subject  # type: ignore[union-attr]
            delivery_id = (
                queries.delivery_id_for(session, edition.id, subscriber.id) if subscriber else None
            )
        if email and subscriber is None:
            recipient = Recipient(0, email, None, "test", copy=copy)
        elif subscriber is not None:
            recipient = Recipient(
                subscriber.id,
                subscriber.email,
                subscriber.name,
                subscriber.token_key,
                None if copy else delivery_id,
                copy=copy,
            )
        else:
            recipient = SAMPLE
        if variant is None or variant.articles == 0:
            raise EditionError(f"{edition.label}: nothing in the sections {recipient.email} chose")
        mail = EditionMail(edition.id, schedule.name, edition.edition_date, subject)
        template = composer.template(
            mail, variant.html, variant.text, subject_prefix=subject_prefix
        )
        return composer.message(template, recipient)

    def dry_run(self, schedule: Schedule, edition: Edition, limit: int | None = None) -> DryRun:
        """Compose every message that a send would, through the same code, and send none."""
        composer = self.composer(schedule)
        templates = self.templates(schedule, edition, composer)
        with self.factory() as session:
            by_key = {v.key: v.id for v in queries.variants(session, edition.id)}
        report = DryRun(variants=len(templates))
        after = 0
        while limit is None or report.messages + report.skipped < limit:
            with self.factory() as session:
                batch = queries.active_subscribers(
                    session, after, self.settings.batch_size, schedule.frequency
                )
            if not batch:
                break
            for sid, email, name, key, variant in batch:
                after = sid
                template = templates.get(by_key.get(variant, -1))
                if template is None:
                    report.skipped += 1
                    continue
                try:
                    message = composer.message(template, Recipient(sid, email, name, key))
                except ComposeError as exc:
                    report.problems.append(str(exc))
                    continue
                report.messages += 1
                report.bytes += len(message.data)
                if limit is not None and report.messages + report.skipped >= limit:
                    break
        return report


@dataclass
class WorkReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    editions: set[str] = field(default_factory=set)
    aborted: str | None = None

    def add(self, label: str, result: RunResult) -> None:
        if result.claimed:
            self.editions.add(label)
        self.sent += result.sent
        self.deferred += result.deferred
        self.failed += result.failed
        self.bounced += result.bounced


@dataclass
class DryRun:
    variants: int
    messages: int = 0
    bytes: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
