"""How a send behaves, from the settings: the options of one ``SendRun``, and
where its outcomes journal lives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from digest.config.settings import Settings
from digest.models import Edition
from digest.send.result import SendOptions
from digest.track.outcomes import RetryPolicy


def journal_folder(cfg: Settings) -> Path:
    return cfg.var_dir / "outcomes.journal"


def send_options(
    cfg: Settings,
    edition: Edition,
    *,
    limit: int | None,
    wait: bool,
    paced: bool = True,
    share: int = 1,
) -> SendOptions:
    """How a send of ``edition`` behaves, from the settings (``paced``: at
    DIGEST_SMTP_RATE; a dry run is not, it sends nothing). ``share``: how many
    senders work together."""
    smtp, retry = cfg.smtp, cfg.retry
    return SendOptions(
        connections=smtp.connections,
        batch_size=cfg.batch_size,
        limit=limit,
        wait=wait,
        retry=RetryPolicy(
            retry.steps,
            retry.jitter,
            timedelta(seconds=retry.give_up_after),
            greylist=retry.greylist_delay,
        ),
        edition_deadline=edition.give_up_deadline,
        rate=smtp.rate if paced else None,  # one bucket for every sender
        # The other senders' claims end in seconds, not at their lease: look often.
        max_idle_sleep=1.0 if share > 1 else SendOptions.max_idle_sleep,
    )
