"""A private Postfix for the tests: Debian's package, its own configuration and
queue (``postfix -c DIR``), listening on a 127.0.0.1 port.

Nothing leaves the machine: ``default_transport = error``, DNS is off, and each
test domain is routed by ``transport_maps`` to an aiosmtpd server on 127.0.0.1
that plays mail.ru or Gmail. Mail to the return-path domain (the VERP address
``bounces+TOKEN@…``, where Postfix's own DSNs go) is delivered by Postfix's
virtual(8) agent into a Maildir, as a production bounce mailbox would be.

Under ``CI=true`` a missing Postfix is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from digest.capture import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
NOBODY = 65534  # virtual(8) writes the bounce Maildir as this user
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

SERVICES = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def require_postfix() -> None:
    if os.access(POSTFIX, os.X_OK):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("Postfix is not installed (make test installs Debian's postfix)")
    pytest.skip("Postfix is not installed (make test installs Debian's postfix)")


STILL = 10.0  # seconds a queue may stand still before wait_idle flushes it


class Postfix:
    """``routes``: domain → 127.0.0.1 port of the server that plays it.
    ``lifetime``: seconds a deferred message stays queued before Postfix gives up
    and returns it (its queue-expiry DSN)."""

    def __init__(
        self,
        routes: dict[str, int],
        bounce_domain: str,
        lifetime: int = 6,
        refusals: dict[str, str] | None = None,
    ) -> None:
        # ``refusals``: domain → the reply its recipients get at RCPT (access(5):
        # a 421 answers and then closes the connection, as a provider does).
        self.refusals = refusals or {}
        self.routes = routes
        self.bounce_domain = bounce_domain
        self.lifetime = lifetime
        self.port = free_port()
        # Outside pytest's 0700 tmp: Postfix's daemons and virtual(8) run as other
        # users and must reach their directories.
        self.root = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "bounces"

    def _write_config(self) -> None:
        for folder in ("etc", "queue", "data", "mail"):
            (self.root / folder).mkdir()
        shutil.chown(self.root / "data", "postfix", "postfix")
        shutil.chown(self.root / "mail", NOBODY, NOBODY)
        routes = "".join(f"{d} smtp:[127.0.0.1]:{p}\n" for d, p in self.routes.items())
        (self.config / "transport").write_text(routes)
        (self.config / "mailboxes").write_text(f"bounces@{self.bounce_domain} bounces/\n")
        self._write_refusals()
        (self.config / "master.cf").write_text(SERVICES.format(listen=f"127.0.0.1:{self.port}"))
        (self.config / "main.cf").write_text(
            f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.digest.test
mydomain = digest.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access texthash:{self.config}/refusals
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery is off in the test relay
# Nothing leaves the machine: every test domain has a route, the rest fails.
default_transport = error:5.4.4 no route to this domain in the test relay
relay_transport = $default_transport
transport_maps = texthash:{self.config}/transport
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtp_tls_security_level = none
smtpd_tls_security_level = none
# The bounce mailbox: DSNs to bounces+TOKEN@ land in one Maildir.
virtual_mailbox_domains = {self.bounce_domain}
virtual_mailbox_base = {self.root}/mail
virtual_mailbox_maps = texthash:{self.config}/mailboxes
virtual_uid_maps = static:{NOBODY}
virtual_gid_maps = static:{NOBODY}
virtual_minimum_uid = 100
recipient_delimiter = +
# Retries within a second or two; give up after `lifetime` seconds.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = {self.lifetime}s
bounce_queue_lifetime = {self.lifetime}s
delay_warning_time = 0h
# A receiver or client that goes quiet costs seconds and is logged, never the
# test's whole wait (the defaults are 5 to 10 minutes).
smtpd_timeout = 30s
smtp_connect_timeout = 5s
smtp_helo_timeout = 10s
smtp_mail_timeout = 10s
smtp_rcpt_timeout = 10s
smtp_data_init_timeout = 10s
smtp_data_xfer_timeout = 10s
smtp_data_done_timeout = 10s
smtp_rset_timeout = 10s
smtp_quit_timeout = 10s
smtputf8_enable = yes
maillog_file = {self.root}/maillog
maillog_file_prefixes = {self.root}
biff = no
"""
        )

    def _write_refusals(self) -> None:
        lines = "".join(f"{d} {reply}\n" for d, reply in self.refusals.items())
        (self.config / "refusals").write_text(lines)

    def refuse(self, refusals: dict[str, str]) -> None:
        """From now on these domains' recipients get these replies (none: all
        accepted again); ``postfix reload`` restarts smtpd with the new map."""
        self.refusals = refusals
        self._write_refusals()
        self._postfix("reload")

    def refused(self) -> int:
        """RCPTs refused by the ``refusals`` map so far (its log lines)."""
        path = self.root / "maillog"
        text = path.read_text(errors="replace") if path.exists() else ""
        return sum(1 for line in text.splitlines() if "NOQUEUE: reject: RCPT" in line)

    def start(self) -> Postfix:
        require_postfix()
        self._write_config()
        self._postfix("start")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("Postfix did not listen:\n" + self.log()) from None
                time.sleep(0.1)

    def stop(self) -> None:
        self._postfix("stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _postfix(self, command: str, check: bool = True) -> None:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config), command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"postfix {command}: {done.stderr}\n{self.log()}")

    def queued(self) -> int:
        """Messages still in Postfix's queues."""
        return len(self._queue_files())

    def _queue_files(self) -> list[Path]:
        queue = self.root / "queue"
        return [p for q in QUEUES for p in (queue / q).rglob("*") if p.is_file()]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every message is delivered or returned (DSNs included).

        Under load Postfix's qmgr once logged "skipped, still being delivered" for
        a greylisted message it was deferring, and left its file in ``incoming``
        with nothing to wake it again (a clean-clone CI waited 90 s). A queue that
        has not moved for ``STILL`` seconds gets a flush, as an operator's
        ``postqueue -f`` would: a scan of every queue."""
        deadline = time.monotonic() + timeout
        last, moved = -1, time.monotonic()
        while queued := self.queued():
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(self._stuck())
            if queued != last:
                last, moved = queued, now
            elif now - moved > STILL:
                self._postfix("flush", check=False)
                moved = now
            time.sleep(0.2)

    def _stuck(self) -> str:
        """What is still queued and everything the log says of it (the tail of the
        log alone once hid the one message that stayed)."""
        files = self._queue_files()
        path = self.root / "maillog"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        parts = [f"{len(files)} messages still queued:"]
        for file in files:
            mode = oct(file.stat().st_mode & 0o777) if file.exists() else "gone"
            parts.append(f"-- {file.relative_to(self.root)} (mode {mode})")
            parts.extend(line for line in lines if file.name in line)
        parts.append("-- the log's tail:")
        parts.extend(lines[-15:])
        return "\n".join(parts)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace")[-6000:] if path.exists() else "(no log)"

    def __enter__(self) -> Postfix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
