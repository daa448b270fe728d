"""Mailing lists from ``subscribers/lists.toml``: who a digest is for and how it is labelled."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from digest.errors import ConfigError


class MailingList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    name: str = Field(min_length=1, max_length=100)
    # RFC 2919: the id is a dot-atom, constant for the list, at most 255 octets.
    list_id: str = Field(pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", max_length=255)
    # Mail.ru's feedback loop: one constant value per mail stream.
    msgtype: str = Field(pattern=r"^[A-Za-z0-9]{1,32}$")
    double_opt_in: bool = True
    # How long a confirmation link stays good.
    confirm_days: int = Field(default=7, ge=1, le=60)
    description: str = ""
    # Sections a new subscriber gets when the import or form names none ([] = all).
    default_sections: tuple[str, ...] = ()
    # Privacy first: both off unless the list turns them on.
    track_opens: bool = False
    track_clicks: bool = False
    # False: opens and clicks are counted per edition, never tied to a subscriber.
    individual_tracking: bool = False

    @property
    def tracking(self) -> bool:
        return self.track_opens or self.track_clicks

    @property
    def clicks_per_reader(self) -> bool:
        """Clicks are told apart by reader: what the sunset rule needs before it
        may call anyone silent (issue 28 §5)."""
        return self.track_clicks and self.individual_tracking


def load_lists(directory: Path) -> dict[str, MailingList]:
    path = directory / "lists.toml"
    if not path.is_file():
        raise ConfigError(f"no list definitions at {path} (DIGEST_SUBSCRIBERS_DIR)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    lists = {}
    for key, table in data.items():
        try:
            lists[key] = MailingList.model_validate({"key": key, **table})
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"{path}: list {key!r}: {exc}") from None
    return lists


def get_list(directory: Path, key: str) -> MailingList:
    lists = load_lists(directory)
    if key not in lists:
        raise ConfigError(f"no list {key!r} in {directory / 'lists.toml'}")
    return lists[key]
