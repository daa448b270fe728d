"""Settings: defaults, then ``digest.toml`` (or ``$DIGEST_CONFIG``), then the environment.

One frozen object is built at the entry point (``load_settings``) and passed
down; no other module reads the environment. Secrets (the signing key, the
SMTP password) are taken from the environment only: a config file that holds
one is refused, because config files end up in repositories.
"""

from __future__ import annotations

import os
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from digest.config.parts import DkimPart, RetryPart, SmtpPart
from digest.config.values import (
    AbsoluteUrl,
    BounceAddress,
    DatabaseUrl,
    DomainCaps,
    FromAddress,
    LogLevel,
    Network,
    Networks,
    SecondsList,
    SmtpTarget,
    SmtpUrls,
    ZoneName,
    parse_domain_caps,
    parse_editor_accounts,
    parse_networks,
    parse_seconds_list,
    parse_smtp_urls,
)
from digest.errors import ConfigError

ENV_PREFIX = "DIGEST_"

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class Settings(BaseSettings):
    """Every setting digest knows. The README table is checked against this class."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    database_url: DatabaseUrl = Field(
        default="", description="SQLAlchemy URL; default: a SQLite file var/digest.sqlite3"
    )
    smtp_url: SmtpUrls = Field(
        default=None, description="Relay: smtp://[user:pass@]host:port, ?starttls=true, or smtps://"
    )
    smtp_connections: int = Field(
        default=8, ge=1, le=256, description="SMTP connections kept open during a send"
    )
    senders: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=64,
        description="Processes that send one edition together in `digest send` "
        "(default: the machine's cores); DIGEST_SMTP_RATE, domain caps and pauses are "
        "shared by all, each keeps its share of each domain's window",
    )
    send_nice: int = Field(  # README: the desk and the CLI first in line during a send
        default=10, ge=0, le=19, description="A sending process's nice value; 0: not lowered"
    )
    smtp_pipelining: bool = Field(
        default=True,
        description="RFC 2920: MAIL, RCPT and DATA in one write when the relay offers "
        "PIPELINING; 0: plain aiosmtplib, one command at a time",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA bundle that signs the relay's certificate (default: the system's); "
        "certificates are always verified",
    )
    smtp_connect_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to open a connection, greeting, TLS and login"
    )
    smtp_command_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for the reply to MAIL, RCPT or RSET"
    )
    smtp_data_timeout: float = Field(
        default=180.0, gt=0, description="Seconds to wait for the reply after the message data"
    )
    smtp_rate: float | None = Field(
        default=None,
        gt=0,
        description="Messages per second across every sender process on every machine "
        "(one token bucket in the database; unset: no limit)",
    )
    relay_cooldown: float = Field(
        default=30.0, gt=0, description="Seconds a failing relay rests (doubles, up to 10 min)"
    )
    relay_outage_limit: float = Field(
        default=900.0, gt=0, description="Seconds with no usable relay before a send stops"
    )
    retry_schedule: SecondsList = Field(
        default="300,900,1800,3600,7200,14400",
        description="Seconds before each retry of a deferred message; the last step repeats",
    )
    retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each retry waits up to this share longer, at random"
    )
    give_up_after: float = Field(
        default=86400.0,
        gt=0,
        description="Seconds after the first attempt when a deferred message is failed for good",
    )
    soft_bounce_limit: int = Field(
        default=3, ge=1, description="Soft bounces (mailbox full) on this many distinct days …"
    )
    soft_bounce_days: int = Field(
        default=15, ge=1, description="… within this many days suppress the address"
    )
    keep_deliveries: int = Field(
        default=0, ge=0, le=3650, description="Days of delivery rows the scheduler keeps: "
        "each night older editions become summaries, as `digest db prune` (0: off)"
    )  # fmt: skip
    sunset_after: int = Field(
        default=0,
        ge=0,
        le=60,
        description="Months without a click after which a reader gets one re-engagement "
        "letter, then is paused (0: off; needs individual click tracking)",
    )
    sunset_grace_days: int = Field(
        default=14, ge=1, le=90, description="Days a reader has to answer that letter"
    )
    greylist_delay: float = Field(
        default=300.0,
        ge=0,
        description="Seconds before a greylisted recipient is tried again, at the soonest "
        "(a retry step is never shorter)",
    )
    domain_failed_cohort: float = Field(
        default=1.0,
        gt=0,
        description="Failed cohorts (concurrency × negative replies in a row: 421, lost line, "
        "rate limit, policy) that pause a domain (Postfix's failed_cohort_limit)",
    )
    domain_pause: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a domain is held after a failed cohort, then one probe; doubles",
    )
    domain_max_pause: float = Field(
        default=600.0,
        gt=0,
        description="The longest a domain's back-off grows to",
    )
    domain_caps: DomainCaps = Field(
        default="",
        description="Fixed caps in messages per minute, e.g. gmail.com=600,mail.ru=300",
    )
    db_outage_limit: float = Field(
        default=600.0,
        ge=0,
        description="Seconds a send or worker waits for a database gone away before it "
        "stops with exit 75 (accepted messages wait in var/outcomes.journal)",
    )
    claim_lease: float = Field(
        default=120.0,
        ge=5,
        description="Seconds a claim is held; a dead worker's claims return to the queue after it",
    )
    bounce_address: BounceAddress = Field(
        default="",
        description="Envelope sender for returned mail (default: bounces@ the From domain); "
        "with VERP it becomes bounces+TOKEN@domain",
    )
    verp: bool = Field(default=True, description="Give each message its own return path (VERP)")
    dkim_key_file: Path | None = Field(
        default=None,
        description="PEM private key to DKIM-sign with (made by `digest dkim keygen`); "
        "unset: no signing here (leave it to the MTA)",
    )
    dkim_selector: str = Field(
        default="digest", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="DKIM selector"
    )
    dkim_domain: str = Field(default="", description="DKIM d= domain; default: the From's")
    dkim_ed25519_key_file: Path | None = Field(
        default=None,
        description="An Ed25519 key (`digest dkim keygen --type ed25519`) for a second "
        "signature beside the RSA one (RFC 8463); needs DIGEST_DKIM_KEY_FILE too",
    )
    dkim_ed25519_selector: str = Field(
        default="digest-ed25519",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="The Ed25519 key's selector: a TXT record of its own",
    )
    desk_admins: str = Field(
        default="",
        description="Desk accounts that are also admins (the Readers page), comma-separated",
    )
    metrics_allow: Networks = Field(
        default="",
        description="Who may read /metrics (and --metrics-port) and what /healthz's checks "
        "found: addresses or networks, comma-separated; empty: /metrics to anyone, "
        "/healthz's details to nobody (it says ok or fail per part to anyone)",
    )
    on_correction: Literal["pause", "rebuild", "ignore"] = Field(
        default="pause",
        description="An article of an edition being sent changed or was withdrawn: pause "
        "the send until someone rebuilds it (`digest editions rebuild`), rebuild it and go "
        "on, or ignore it (the rest goes out as approved; logged)",
    )
    worker_poll: float = Field(
        default=5.0, gt=0, description="Seconds an idle `digest worker` waits between looks"
    )
    api_rate: int = Field(
        default=600, ge=1, le=100_000, description="Calls a minute each API token may make"
    )
    from_: FromAddress = Field(
        default="Новости ВПК <digest@vpk.example.ru>",
        alias="DIGEST_FROM",
        description="From header: a display name and one address",
    )
    base_url: AbsoluteUrl = Field(
        default="https://digest.vpk.example.ru",
        description="Public URL of the web app; unsubscribe and preferences links start here "
        "(https: RFC 8058 one-click needs it)",
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signing key for links (environment only, never a file)"
    )
    editor_password: SecretStr | None = Field(
        default=None,
        description="The editors' desk password for the user `editor` (environment only)",
    )
    editors: SecretStr | None = Field(
        default=None,
        description="Editor accounts `name:password,name:password` (environment only)",
    )
    secret_key_file: Path = Field(
        default=Path("var/secret.key"),
        description="Where the key is read from when DIGEST_SECRET_KEY is unset (made by the demo)",
    )
    timezone: ZoneName = Field(
        default="Europe/Moscow",
        description="The site's time zone: schedules that name none use it",
    )
    site_name: str = Field(default="Новости ВПК", description="Name shown in the mail's header")
    site_url: AbsoluteUrl = Field(
        default="https://vpk.example.ru", description="The news site's home page"
    )
    var_dir: Path = Field(default=Path("var"), description="Working files: database, outbox, keys")
    templates_dir: Path = Field(
        default=PROJECT_ROOT / "templates", description="Jinja templates and their CSS"
    )
    schedules_dir: Path = Field(
        default=PROJECT_ROOT / "schedules", description="One TOML file per edition kind"
    )
    subscribers_dir: Path = Field(
        default=PROJECT_ROOT / "subscribers", description="List definitions (lists.toml)"
    )
    sources_dir: Path = Field(
        default=PROJECT_ROOT / "sources", description="Site databases read: one TOML file each"
    )
    batch_size: int = Field(
        default=500, ge=1, le=10000, description="Deliveries claimed and recorded per batch"
    )
    feedback_sender_id: str = Field(
        default="vpkdigest",
        min_length=5,
        max_length=15,
        pattern=r"^[A-Za-z0-9]+$",
        description="SenderId, the last field of Gmail's Feedback-ID header",
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    # -- derived values -------------------------------------------------------

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'digest.sqlite3'}"

    def metrics_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.metrics_allow)

    @property
    def relays(self) -> list[SmtpTarget]:
        return list(parse_smtp_urls(self.smtp_url)) if self.smtp_url else []

    def require_relays(self, why: str = "say where to send (smtp://host:port)") -> list[SmtpTarget]:
        """The relays, or a ConfigError saying what waits for DIGEST_SMTP_URL."""
        if not self.relays:
            raise ConfigError(f"DIGEST_SMTP_URL is not set: {why}")
        return self.relays

    @property
    def retry_steps(self) -> tuple[float, ...]:
        return parse_seconds_list(self.retry_schedule)

    @property
    def smtp(self) -> SmtpPart:
        return SmtpPart(
            relays=tuple(self.relays),
            connections=self.smtp_connections,
            connect_timeout=self.smtp_connect_timeout,
            command_timeout=self.smtp_command_timeout,
            data_timeout=self.smtp_data_timeout,
            rate=self.smtp_rate,
            ca_file=self.smtp_ca_file,
            relay_cooldown=self.relay_cooldown,
            relay_outage_limit=self.relay_outage_limit,
            domain_pause=self.domain_pause,
            domain_max_pause=self.domain_max_pause,
            domain_failed_cohort=self.domain_failed_cohort,
            caps=parse_domain_caps(self.domain_caps),
            pipelining=self.smtp_pipelining,
        )

    @property
    def retry(self) -> RetryPart:
        return RetryPart(
            steps=self.retry_steps,
            jitter=self.retry_jitter,
            give_up_after=self.give_up_after,
            greylist_delay=self.greylist_delay,
            soft_bounce_limit=self.soft_bounce_limit,
            soft_bounce_days=self.soft_bounce_days,
            claim_lease=self.claim_lease,
        )

    @property
    def dkim(self) -> DkimPart:
        return DkimPart(
            key_file=self.dkim_key_file,
            selector=self.dkim_selector,
            domain=self.dkim_domain or self.sender.domain,
            ed25519_key_file=self.dkim_ed25519_key_file,
            ed25519_selector=self.dkim_ed25519_selector,
        )

    @property
    def return_path(self) -> str:
        """The bounce mailbox: where DSNs and VERP addresses point."""
        return self.bounce_address or f"bounces@{self.sender.domain}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sender(self) -> Address:
        name, addr = parseaddr(self.from_)
        local, domain = addr.split("@")
        return Address(display_name=name, username=local, domain=domain)

    def editor_accounts(self) -> dict[str, str]:
        """Who may log in to the desk: DIGEST_EDITORS, plus `editor` with
        DIGEST_EDITOR_PASSWORD. Empty: the desk is closed."""
        return parse_editor_accounts(
            self.editors.get_secret_value() if self.editors is not None else None,
            self.editor_password.get_secret_value() if self.editor_password is not None else None,
        )

    def link_key(self) -> bytes:
        """The key for signed links: DIGEST_SECRET_KEY, else the key file the demo wrote."""
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value()
        elif self.secret_key_file.is_file():
            key = self.secret_key_file.read_text(encoding="utf-8").strip()
        else:
            raise ConfigError(
                "DIGEST_SECRET_KEY is not set and there is no key file at "
                f"{self.secret_key_file} (DIGEST_SECRET_KEY_FILE); set one, e.g. "
                "DIGEST_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if len(key) < 16:
            raise ConfigError("DIGEST_SECRET_KEY: must be at least 16 characters")
        return key.encode("utf-8")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML layer is passed in by load_settings() as init kwargs under
        # the environment, so env wins over the file and both over defaults.
        return env_settings, init_settings
