"""The settings in the parts the rooms use, typed and parsed: how to speak to the
relays (``SmtpPart``), when to try again (``RetryPart``), what to sign with
(``DkimPart``). A room takes its part, not the whole settings."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from digest.config.values import SmtpTarget
from digest.errors import ConfigError


@dataclass(frozen=True)
class SmtpPart:
    """Relays, connections, timeouts and the pace (DIGEST_SMTP_*, DIGEST_RELAY_*,
    DIGEST_DOMAIN_*)."""

    relays: tuple[SmtpTarget, ...]
    connections: int
    connect_timeout: float
    command_timeout: float
    data_timeout: float
    rate: float | None
    ca_file: Path | None
    relay_cooldown: float
    relay_outage_limit: float
    domain_pause: float
    domain_max_pause: float
    domain_failed_cohort: float
    caps: Mapping[str, int]
    pipelining: bool = True

    def tls_context(self) -> ssl.SSLContext:
        """The context TLS connections to the relay verify against."""
        cafile = self.ca_file
        if cafile is not None and not cafile.is_file():
            raise ConfigError(f"DIGEST_SMTP_CA_FILE: no such file {cafile}")
        try:
            return ssl.create_default_context(cafile=str(cafile) if cafile else None)
        except ssl.SSLError as exc:
            raise ConfigError(f"DIGEST_SMTP_CA_FILE: not a CA bundle: {exc}") from None


@dataclass(frozen=True)
class RetryPart:
    """When a deferred message is tried again, when it is given up, how soft
    bounces add up, and how long a claim is held (DIGEST_RETRY_*, …)."""

    steps: tuple[float, ...]
    jitter: float
    give_up_after: float
    greylist_delay: float
    soft_bounce_limit: int
    soft_bounce_days: int
    claim_lease: float


@dataclass(frozen=True)
class DkimPart:
    """The signing keys' files, selectors and the signing domain (DIGEST_DKIM_*)."""

    key_file: Path | None
    selector: str
    domain: str
    ed25519_key_file: Path | None
    ed25519_selector: str
