"""Settings: defaults, then ``digest.toml`` (or ``$DIGEST_CONFIG``), then the environment.

One frozen object is built at the entry point (``load_settings``) and passed
down; no other module reads the environment. Secrets (the signing key, the
SMTP password) are taken from the environment only: a config file that holds
one is refused, because config files end up in repositories.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from digest.errors import ConfigError

ENV_PREFIX = "DIGEST_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_FIELDS = ("secret_key",)


@dataclass(frozen=True)
class SmtpTarget:
    """Where mail goes: parsed from ``smtp://[user:pass@]host:port[?starttls=true]`` or ``smtps://``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = False

    def __str__(self) -> str:
        # Never print the password: this string goes into logs and reports.
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        tls = "?starttls=true" if self.starttls else ""
        return f"{scheme}://{user}{self.host}:{self.port}{tls}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse an SMTP relay URL; raise ``ValueError`` saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"scheme must be smtp:// or smtps://, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    implicit_tls = parts.scheme == "smtps"
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "false") in ("1", "true", "yes", "on")
    if starttls and implicit_tls:
        raise ValueError("smtps:// is already TLS; drop ?starttls=true")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit_tls,
        starttls=starttls,
    )


def _zone_name(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


ZoneName = Annotated[str, AfterValidator(_zone_name)]
"""An IANA time zone name (``Europe/Moscow``), checked when it is read."""


class Settings(BaseSettings):
    """Every setting digest knows. The README table is checked against this class."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    database_url: str = Field(
        default="", description="SQLAlchemy URL; default: a SQLite file var/digest.sqlite3"
    )
    smtp_url: str | None = Field(
        default=None,
        description="Relay: smtp://[user:pass@]host:port, ?starttls=true, "
        "or smtps:// (implicit TLS)",
    )
    smtp_connections: int = Field(
        default=8, ge=1, le=256, description="SMTP connections kept open during a send"
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA bundle that signs the relay's certificate (default: the system's); "
        "certificates are always verified",
    )
    smtp_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for any SMTP reply before giving up"
    )
    from_: str = Field(
        default="Новости ВПК <digest@vpk.example.ru>",
        alias="DIGEST_FROM",
        description="From header: a display name and one address",
    )
    base_url: str = Field(
        default="https://digest.vpk.example.ru",
        description="Public URL of the web app; unsubscribe and preferences links start here "
        "(https: RFC 8058 one-click needs it)",
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signing key for links (environment only, never a file)"
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
    site_url: str = Field(default="https://vpk.example.ru", description="The news site's home page")
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
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        if value and "://" not in value:
            raise ValueError("must be an SQLAlchemy URL such as sqlite:///var/digest.sqlite3")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_smtp_url(value)
        return value.strip()

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        name, addr = parseaddr(value)
        if not addr or addr.count("@") != 1 or "," in value.replace(name, ""):
            raise ValueError("must be one address, e.g. 'Новости ВПК <digest@example.ru>'")
        return value

    @field_validator("base_url", "site_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    # -- derived values -------------------------------------------------------

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'digest.sqlite3'}"

    @property
    def smtp(self) -> SmtpTarget | None:
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None

    def tls_context(self) -> ssl.SSLContext:
        """The context TLS connections to the relay verify against."""
        cafile = self.smtp_ca_file
        if cafile is not None and not cafile.is_file():
            raise ConfigError(f"DIGEST_SMTP_CA_FILE: no such file {cafile}")
        try:
            return ssl.create_default_context(cafile=str(cafile) if cafile else None)
        except ssl.SSLError as exc:
            raise ConfigError(f"DIGEST_SMTP_CA_FILE: not a CA bundle: {exc}") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sender(self) -> Address:
        name, addr = parseaddr(self.from_)
        local, domain = addr.split("@")
        return Address(display_name=name, username=local, domain=domain)

    def signing_key(self) -> bytes:
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


def env_name(field: str) -> str:
    """The environment variable that sets a field (``from_`` is ``DIGEST_FROM``)."""
    info = Settings.model_fields[field]
    return info.alias or ENV_PREFIX + field.upper()


def _read_config_file(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.is_file():
        if explicit:
            raise ConfigError(f"DIGEST_CONFIG: no such file {path}")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = "from_" if key == "from" else key
        if field not in Settings.model_fields:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        if field in SECRET_FIELDS:
            raise ConfigError(
                f"{path}: {key} is a secret; set {env_name(field)} in the environment"
            )
        if field == "smtp_url" and isinstance(value, str) and parse_smtp_url(value).password:
            raise ConfigError(
                f"{path}: smtp_url holds a password; set DIGEST_SMTP_URL in the environment"
            )
        values[field] = value
    return values


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once, at an entry point. A wrong value raises ``ConfigError``
    naming the setting (``DIGEST_SMTP_URL: scheme must be …``)."""
    explicit = "DIGEST_CONFIG" in os.environ
    config_path = Path(os.environ.get("DIGEST_CONFIG", "digest.toml"))
    try:
        file_values = _read_config_file(config_path, explicit)
    except ValueError as exc:  # a bad smtp_url inside the file
        raise ConfigError(f"{config_path}: smtp_url: {exc}") from None
    file_values.update(overrides)
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = str(error["loc"][0]) if error["loc"] else "settings"
        field = "from_" if loc in ("from_", "DIGEST_FROM") else loc
        name = env_name(field) if field in Settings.model_fields else loc
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "; ".join(lines)
