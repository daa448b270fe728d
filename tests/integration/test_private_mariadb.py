"""The private MariaDB (the one the suite, `make demo-site` and the benchmark
start) keeps everything in its own folder, its temporary files too: a clean-clone
CI run once failed to make its data directory because a temporary table the
installer wrote in the machine's shared /tmp was gone before it was dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.capture import free_port
from tests.support.mariadb import PrivateMariaDB

pytestmark = [pytest.mark.mariadb]


def test_the_private_mariadb_makes_and_runs_with_no_shared_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb_installed: None
) -> None:
    # TMPDIR is where mariadbd writes temporary files unless told otherwise.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "not-there"))
    server = PrivateMariaDB(tmp_path / "db", free_port())
    server.start("site")
    try:
        with server.connect("site") as conn, conn.cursor() as cursor:
            # A sort too large for memory spills to the server's temporary folder.
            cursor.execute("SET SESSION sort_buffer_size = 32768")
            cursor.execute("SELECT seq FROM seq_1_to_200000 ORDER BY seq DESC LIMIT 1")
            assert cursor.fetchone() == (200000,)
    finally:
        server.stop()
    assert not (tmp_path / "not-there").exists()
