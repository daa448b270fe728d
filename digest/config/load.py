"""Loading the settings once, at an entry point: ``digest.toml`` (or ``$DIGEST_CONFIG``)
under the environment; a secret in a file is refused (config files end up in
repositories), a wrong value names its setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from digest.config.settings import ENV_PREFIX, Settings
from digest.config.values import (
    parse_smtp_urls,
)
from digest.errors import ConfigError

SECRET_FIELDS = ("secret_key", "editor_password", "editors")


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
        if (
            field == "smtp_url"
            and isinstance(value, str)
            and any(t.password for t in parse_smtp_urls(value))
        ):
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
