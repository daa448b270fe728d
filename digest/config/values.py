"""Settings' values from outside, checked: relay URLs, lists of seconds, domain
caps, time zones, addresses and URLs. Each parser is cached by its text, so a
value is parsed once however often it is read (and a copy of the settings with
another value parses that one)."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from email.utils import parseaddr
from types import MappingProxyType
from typing import Annotated
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

from digest.errors import ConfigError


@dataclass(frozen=True)
class SmtpTarget:
    """Where mail goes: parsed from ``smtp://[user:pass@]host:port[?starttls=true]`` or ``smtps://``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = False
    weight: int = 1

    def __str__(self) -> str:
        # Never print the password: this string goes into logs and reports.
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        options = [o for o, on in (("starttls=true", self.starttls),) if on]
        if self.weight != 1:
            options.append(f"weight={self.weight}")
        query = "?" + "&".join(options) if options else ""
        return f"{scheme}://{user}{self.host}:{self.port}{query}"


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
    unknown = set(query) - {"starttls", "weight"}
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "false") in ("1", "true", "yes", "on")
    if starttls and implicit_tls:
        raise ValueError("smtps:// is already TLS; drop ?starttls=true")
    weight_text = query.get("weight", "1")
    if not weight_text.isdigit() or not 1 <= int(weight_text) <= 1000:
        raise ValueError(f"weight must be a whole number from 1 to 1000, not {weight_text!r}")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit_tls,
        starttls=starttls,
        weight=int(weight_text),
    )


@functools.cache
def parse_smtp_urls(value: str) -> tuple[SmtpTarget, ...]:
    """One relay URL or several, comma-separated, each with an optional ``?weight=N``."""
    urls = [u for u in (part.strip() for part in value.split(",")) if u]
    if not urls:
        raise ValueError("no relay URL given")
    targets = []
    for n, url in enumerate(urls, 1):
        try:
            targets.append(parse_smtp_url(url))
        except ValueError as exc:
            raise ValueError(f"relay {n}: {exc}" if len(urls) > 1 else str(exc)) from None
    return tuple(targets)


@functools.cache
def parse_seconds_list(value: str) -> tuple[float, ...]:
    """``300,900,3600`` → (300.0, 900.0, 3600.0); every step positive."""
    try:
        steps = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"must be seconds separated by commas, e.g. 300,900,3600, not {value!r}"
        ) from None
    if not steps or any(step <= 0 for step in steps):
        raise ValueError("must list at least one positive number of seconds")
    return steps


@functools.cache
def parse_domain_caps(value: str) -> MappingProxyType[str, int]:
    """``gmail.com=600,mail.ru=300`` → messages per minute for each domain."""
    caps: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        domain, sep, number = part.partition("=")
        domain = domain.strip().lower()
        if not sep or not domain or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"{part!r}: write domain=messages-per-minute, e.g. gmail.com=600")
        caps[domain] = int(number)
    return MappingProxyType(caps)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def parse_networks(value: str) -> tuple[Network, ...]:
    """``127.0.0.1/32, 10.0.0.0/8, ::1`` → the networks (a bare address is one host)."""
    networks: list[Network] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r}: write an address or a network, e.g. 10.0.0.0/8") from None
    return tuple(networks)


@functools.cache
def parse_names(value: str) -> frozenset[str]:
    """``anna, boris`` → the names (DIGEST_DESK_ADMINS)."""
    return frozenset(n.strip() for n in value.split(",") if n.strip())


# An IANA name's shape: no dot (so no ``..`` and no ``zone.tab``), no leading or
# doubled slash, no NUL; right/ and posix/ are other clocks and posixrules a
# link, none of them a zone (as ``zoneinfo.available_timezones`` counts them).
_ZONE_KEY = re.compile(
    r"(?!(?:right|posix)/|posixrules\Z)[A-Za-z0-9_+-]{1,40}(?:/[A-Za-z0-9_+-]{1,40}){0,3}\Z"
)


def zone_name(value: str) -> str:
    """``value`` if it names an IANA time zone; ValueError saying so otherwise.
    Only a name of a zone's shape is looked up, and what is no zone file there (a
    folder such as ``Europe``, ``leapseconds``) ZoneInfo refuses itself: listing
    the 600 zones to check one name cost 8-10 ms at every settings load."""
    if not _ZONE_KEY.match(value):
        raise ValueError(f"unknown time zone {value[:60]!r}") from None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value[:60]!r}") from None
    return value


ZoneName = Annotated[str, AfterValidator(zone_name)]
"""An IANA time zone name (``Europe/Moscow``), checked when it is read."""


def database_url(value: str) -> str:
    value = value.strip()
    if value and "://" not in value:
        raise ValueError("must be an SQLAlchemy URL such as sqlite:///var/digest.sqlite3")
    return value


def smtp_urls(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    parse_smtp_urls(value.strip())
    return value.strip()


def seconds_list(value: str) -> str:
    parse_seconds_list(value)
    return value


def domain_caps(value: str) -> str:
    parse_domain_caps(value)
    return value


def bounce_address(value: str) -> str:
    value = value.strip()
    if value and (value.count("@") != 1 or "+" in value or " " in value):
        raise ValueError("must be one plain address such as bounces@example.ru (no +tag)")
    return value


def from_address(value: str) -> str:
    name, addr = parseaddr(value)
    if not addr or addr.count("@") != 1 or "," in value.replace(name, ""):
        raise ValueError("must be one address, e.g. 'Новости ВПК <digest@example.ru>'")
    return value


def is_https(url: str) -> bool:
    """RFC 8058's one-click unsubscribe and the desk's secure cookies need it."""
    return url.startswith("https://")


def absolute_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


def networks(value: str) -> str:
    parse_networks(value)
    return value


def log_level(value: str) -> str:
    value = value.upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


DatabaseUrl = Annotated[str, AfterValidator(database_url)]
SmtpUrls = Annotated[str | None, AfterValidator(smtp_urls)]
SecondsList = Annotated[str, AfterValidator(seconds_list)]
DomainCaps = Annotated[str, AfterValidator(domain_caps)]
BounceAddress = Annotated[str, AfterValidator(bounce_address)]
FromAddress = Annotated[str, AfterValidator(from_address)]
AbsoluteUrl = Annotated[str, AfterValidator(absolute_url)]
LogLevel = Annotated[str, AfterValidator(log_level)]
Networks = Annotated[str, AfterValidator(networks)]


# Query parameters that carry a credential in a database or relay URL (libpq's
# password and sslpassword, tokens, keys): their values are never shown.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")


def masked_url(url: str) -> str:
    """A URL fit to show in a log line, an error, doctor or /healthz (issue 24):
    the password of ``user:password@`` and every credential-like query value
    (``?password=``, ``sslpassword=``) become ``***``. SQLAlchemy masks only the
    first."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that does not parse)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(
        f"{quote(k)}={'***' if any(w in k.lower() for w in _SECRET_WORDS) else quote(v)}"
        for k, v in pairs
    )
    # Put together by hand: urlunsplit drops an empty authority, and
    # «sqlite:///var/digest.sqlite3» (relative to the folder) came out
    # «sqlite:/var/digest.sqlite3», another file.
    slashes = "//" if url.startswith(f"{parts.scheme}://") else ""
    shown = f"{parts.scheme}:{slashes}{netloc}{parts.path}"
    shown += f"?{query}" if parts.query else ""
    return shown + (f"#{parts.fragment}" if parts.fragment else "")


def mask_url_in(text: str, url: str) -> str:
    """``text`` (an error message that may quote ``url``) with the URL masked."""
    return text.replace(url, masked_url(url)) if url else text


def parse_editor_accounts(editors: str | None, editor_password: str | None) -> dict[str, str]:
    """DIGEST_EDITORS (``name:password`` pairs, commas between) and
    DIGEST_EDITOR_PASSWORD (user ``editor``) as accounts; passwords of 8 or more."""
    accounts: dict[str, str] = {}
    for pair in editors.split(",") if editors is not None else []:
        name, sep, password = pair.strip().partition(":")
        if not sep or not name or len(password) < 8:
            raise ConfigError(
                "DIGEST_EDITORS: write name:password pairs separated by commas, "
                "passwords of at least 8 characters"
            )
        accounts[name] = password
    if editor_password is not None:
        if len(editor_password) < 8:
            raise ConfigError("DIGEST_EDITOR_PASSWORD: at least 8 characters")
        accounts["editor"] = editor_password
    return accounts
