"""Fixtures of the subprocess tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The folder a `digest` subprocess runs in (its var/ and database live here)."""
    return tmp_path
