"""Settings (``settings``) and the values they are made of (``values``)."""

from __future__ import annotations

from digest.config.settings import PROJECT_ROOT, Settings, env_name, load_settings
from digest.config.values import SmtpTarget, ZoneName, parse_smtp_url, parse_smtp_urls, zone_name

__all__ = [
    "PROJECT_ROOT",
    "Settings",
    "SmtpTarget",
    "ZoneName",
    "env_name",
    "load_settings",
    "parse_smtp_url",
    "parse_smtp_urls",
    "zone_name",
]
