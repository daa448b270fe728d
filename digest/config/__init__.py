"""Settings (``settings``) and the values they are made of (``values``)."""

from __future__ import annotations

from digest.config.load import env_name, load_settings
from digest.config.parts import DkimPart, RetryPart, SmtpPart
from digest.config.settings import PROJECT_ROOT, Settings
from digest.config.values import SmtpTarget, ZoneName, parse_smtp_url, parse_smtp_urls, zone_name

__all__ = [
    "PROJECT_ROOT",
    "DkimPart",
    "RetryPart",
    "Settings",
    "SmtpPart",
    "SmtpTarget",
    "ZoneName",
    "env_name",
    "load_settings",
    "parse_smtp_url",
    "parse_smtp_urls",
    "zone_name",
]
