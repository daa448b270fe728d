"""The demo: seed-based articles and comments, demo readers (``data``, ``words``)."""

from __future__ import annotations

from digest.demo.data import DemoData, add_subscribers, build, load
from digest.demo.words import DOMAINS, reader_address

__all__ = ["DOMAINS", "DemoData", "add_subscribers", "build", "load", "reader_address"]
