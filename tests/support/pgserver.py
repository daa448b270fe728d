"""A private PostgreSQL for the tests that stop and start the database (issue 18):
initdb in a temporary folder, its own port on 127.0.0.1, its own socket folder,
stopped with ``pg_ctl -m fast`` as ops would, and started again on the same data.

It runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses
root). Under CI=true missing binaries are an error, never a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from digest.capture import free_port
from tests.support.common import IN_CI


def _binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        binaries = _binaries()
        if binaries is None:
            message = "no PostgreSQL server binaries in /usr/lib/postgresql (Debian's postgresql)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.bin = binaries
        self.root = root
        self.data, self.sockets = root / "data", root / "sockets"
        self.port = free_port()

    @property
    def url(self) -> str:
        """Its URL on its port now (a first start may move to another port)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*prefix, *command], capture_output=True, text=True, check=check, timeout=60
        )

    def init(self) -> PrivatePostgres:
        for folder in (self.root, self.data, self.sockets):
            folder.mkdir(exist_ok=True, mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(folder, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        # The port free_port found may be taken by another test's server before
        # PostgreSQL binds it: the first start moves on to another (a restart
        # keeps its port: the services hold its URL).
        for _ in range(3):
            if self._start() or "could not bind" not in self.log():
                break
            self.port = free_port()
        return self.start()

    def start(self) -> PrivatePostgres:
        if not self._start():
            raise RuntimeError(f"the private PostgreSQL did not start:\n{self.log()}")
        return self

    def _start(self) -> bool:
        """pg_ctl start; whether the server is up (a running one counts)."""
        if self._running():
            return True
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        log = self.root / "server.log"
        started = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                            "-l", str(log), "-w", "start", check=False)  # fmt: skip
        return started.returncode == 0

    def _running(self) -> bool:
        status = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def stop(self, check: bool = True) -> None:
        """As ops would for a restart: fast shutdown, every session cut."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                  check=check)  # fmt: skip

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
