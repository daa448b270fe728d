"""Logging: readable lines on a terminal, or one JSON object per line (``--log-json``).

Send-related lines carry ``edition`` (pass ``extra={"edition": id}``), so a
log of many sends can be filtered by edition.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from rich.console import Console
from rich.logging import RichHandler

# /u/, /p/, /confirm/, /c/ and /o/ URLs carry credentials that do not expire.
TOKEN_PATH = re.compile(r"(/(?:u|p|confirm|c|o)/)[^\s\"'?/]+((?:/[^\s\"'?/]+)?)")


def mask_tokens(text: str) -> str:
    """``GET /u/abc.def HTTP/1.1`` → ``GET /u/… HTTP/1.1``."""
    return TOKEN_PATH.sub(lambda m: m.group(1) + "…" + ("/…" if m.group(2) else ""), text)


class MaskTokens(logging.Filter):
    """On a handler: every record's text with its tokens masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_tokens(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def current() -> tuple[str, bool]:
    """The level and whether lines are JSON, as ``setup`` left them (for a child
    process that logs as its parent does)."""
    root = logging.getLogger()
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return logging.getLevelName(root.level), json_lines


def setup(level: str = "INFO", json_lines: bool = False, console: Console | None = None) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(
            console=console or Console(stderr=True),
            show_path=False,
            markup=False,
            rich_tracebacks=False,
            log_time_format="%H:%M:%S",
        )
    # /u/, /p/, /confirm/ … URLs carry credentials: no log line keeps them.
    handler.addFilter(MaskTokens())
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (aiosmtpd logs every connection) stays out unless asked for.
    for noisy in ("mail.log", "aiosmtpd", "asyncio", "alembic", "premailer", "CSSUTILS", "flufl"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # flufl.bounce logs each detector a stranger's message breaks, with its traceback;
    # track.intake says once why the message was set aside.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
