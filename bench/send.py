"""Send benchmark: one edition to a local sink, beside a raw aiosmtplib baseline.

    python bench/send.py --subscribers 20000          # figures for the README
    python bench/send.py --rss 10000,100000           # peak memory, streamed subscribers

The sink is Postfix's smtp-sink (an aiosmtpd sink tops out near 1 100
messages/s and would measure itself). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from statistics import mean, median
from zoneinfo import ZoneInfo

import aiosmtplib
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest import db, demo  # noqa: E402
from digest.cli.senders import sender_main  # noqa: E402
from digest.compose import Recipient  # noqa: E402
from digest.config import load_settings, parse_smtp_url  # noqa: E402
from digest.dkim import DkimKey, Signer, keygen  # noqa: E402
from digest.edition.view import edition_view  # noqa: E402
from digest.models import utcnow  # noqa: E402
from digest.send import run_async  # noqa: E402
from digest.wiring import Services  # noqa: E402

# Today's edition: retries of an older one would already be past its give-up time.
DAY: date = datetime.now(ZoneInfo("Europe/Moscow")).date()

# `--dkim`'s floor: a send with this variable set signs with the RSA signature
# alone, in this process and in the sender processes it starts (multiprocessing's
# spawn runs this file again in each, as __mp_main__, so the line below too).
FLOOR = "BENCH_DKIM_FLOOR"


def signature_alone(self: Signer, data: bytes) -> bytes:
    """The least a DKIM signer with these keys must do for a message: each key's
    signature over a header block's worth of its bytes (no body hash, no
    canonicalisation, no parsing), and a header of about the real one's size."""
    headers = b""
    for _key, private in self.keys:
        assert isinstance(private, rsa.RSAPrivateKey)  # nosec B101: the floor run's key
        signature = private.sign(data[:640], padding.PKCS1v15(), hashes.SHA256())
        encoded = base64.b64encode(signature)
        folded = b"\r\n ".join(encoded[i : i + 72] for i in range(0, len(encoded), 72))
        headers += b"DKIM-Signature: " + b"x" * 240 + b";\r\n b=" + folded + b"\r\n"
    return headers + data


if os.environ.get(FLOOR):  # a sender process of the floor's run
    Signer.sign = signature_alone  # type: ignore[method-assign]


@contextmanager
def signing_floor() -> Iterator[None]:
    """The floor's run: this process signs so too, and the senders it starts."""
    real = Signer.sign
    Signer.sign = signature_alone  # type: ignore[method-assign]
    try:
        with environment({FLOOR: "1"}):
            yield
    finally:
        Signer.sign = real  # type: ignore[method-assign]


def find_sink() -> str:
    for candidate in (shutil.which("smtp-sink"), "/usr/sbin/smtp-sink"):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit("smtp-sink not found: `make bench` installs Postfix (apt-get install postfix)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_sink() -> Iterator[str]:
    binary = find_sink()
    port = free_port()
    # 1024: listen backlog; -u nobody because smtp-sink refuses to run as root.
    proc = subprocess.Popen(
        [binary, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"smtp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(workdir: Path, subscribers: int, database_url: str | None, connections: int) -> Services:
    os.environ.update(
        {
            "DIGEST_SMTP_CONNECTIONS": str(connections),
            "DIGEST_VAR_DIR": str(workdir),
            "DIGEST_DATABASE_URL": database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
            "DIGEST_SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "DIGEST_CONFIG": str(workdir / "none.toml"),
            "DIGEST_LOG_LEVEL": "WARNING",
        }
    )
    (workdir / "none.toml").write_text("")
    cfg = load_settings()
    engine = db.make_engine(cfg.database)
    db.upgrade(engine)
    # The extra sender processes run what `digest send`'s do: without an entry a
    # send is one process whatever DIGEST_SENDERS says (what this bench measured,
    # "two senders" and all, from the composition root to 5 December).
    services = Services(cfg, db.session_factory(engine), clock=utcnow, sender_entry=sender_main)
    schedule = services.schedule("daily")
    demo.load(services.factory, demo.build(schedule, DAY))
    demo.add_subscribers(services.factory, subscribers, now=datetime.now(UTC))
    return services


def measure_render(services: Services, repeat: int = 5) -> dict[str, tuple[float, float]]:
    """Per variant: the render+inline time of the build (what a send pays, with
    premailer's CSS cache cold for the first variant) and the best of a few more."""
    from digest import store
    from digest.models import Edition
    from digest.render import parse_section_key

    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, DAY)
    with services.factory() as session:
        stored = {v.key: v.render_ms for v in store.variants(session, edition.id)}
        current = session.get(Edition, edition.id)
        assert current is not None
        view = edition_view(services.tools, session, schedule, current)
    figures = {}
    for key in sorted(stored):
        variant = view.for_sections(parse_section_key(key))
        assert variant is not None
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            services.tools.renderer.render(variant)
            times.append((time.perf_counter() - started) * 1000)
        figures[key or "all sections"] = (stored[key], min(times))
    return figures


def measure_compose(services: Services, count: int) -> tuple[float, int]:
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, DAY)
    composer = services.tools.composer(schedule)
    template = next(iter(services.sender.templates(schedule, edition, composer).values()))
    people = [
        Recipient(i, f"reader{i:05d}@example.ru", "Иван Петров" if i % 3 else None, f"key{i:013d}")
        for i in range(count)
    ]
    size = 0
    started = time.perf_counter()
    for person in people:
        size = len(composer.message(template, person).data)
    return (time.perf_counter() - started) / count * 1e6, size


async def baseline(url: str, messages: list[bytes], total: int, connections: int) -> float:
    """Prebuilt bytes through aiosmtplib.sendmail() and nothing else."""
    target = parse_smtp_url(url)
    counter = itertools.count()
    pool = itertools.cycle(messages)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname=target.host, port=target.port, timeout=30)
        await smtp.connect()
        while next(counter) < total:
            await smtp.sendmail("digest@vpk.example.ru", ["reader@example.ru"], next(pool))
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return total / (time.perf_counter() - started)


def cpu_seconds() -> float:
    """CPU time of this process and of its children already waited for (the sender
    processes of a send; the sink runs on and is not counted)."""
    own, done = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class Send:
    rate: float  # messages a second
    sent: int
    cpu_us: float  # CPU of digest's processes per message sent
    busy: float  # the share of the whole machine in use meanwhile (the sink too)


def end_to_end(services: Services, url: str) -> Send:
    """What `digest send` runs (``Sender.deliver``), DIGEST_SENDERS processes and all."""
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, DAY)
    cpu, ticks, started = cpu_seconds(), machine_ticks(), time.perf_counter()
    result = services.sender.deliver(schedule, edition, wait=False, via=parse_smtp_url(url))
    elapsed = time.perf_counter() - started
    busy = [b - a for a, b in zip(ticks, machine_ticks(), strict=True)]
    sent = max(result.sent, 1)
    return Send(
        result.sent / elapsed,
        result.sent,
        (cpu_seconds() - cpu) / sent * 1e6,
        busy[0] / max(busy[1], 1),
    )


@contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fresh_send(args: argparse.Namespace, url: str, extra: dict[str, str], subscribers: int) -> Send:
    """A send of a new database's edition with ``extra`` settings."""
    with environment(extra), tempfile.TemporaryDirectory(prefix="digest-bench-") as work:
        services = setup(Path(work), subscribers, args.database_url, args.connections)
        return end_to_end(services, url)


def sample_messages(services: Services, count: int = 50) -> list[bytes]:
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, DAY)
    composer = services.tools.composer(schedule)
    template = next(iter(services.sender.templates(schedule, edition, composer).values()))
    return [
        composer.message(template, Recipient(i, f"r{i}@example.ru", None, f"k{i:015d}")).data
        for i in range(count)
    ]


def smtp_source(url: str, size: int, total: int, sessions: int) -> float | None:
    """Postfix's own client into the same sink (the machine's ceiling here): messages
    of digest's size, ``sessions`` connections each kept open (-d); msg/s, or None
    when smtp-source is not installed."""
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(binary).exists():
        return None
    host = url.removeprefix("smtp://")
    command = [binary, "-d", "-s", str(sessions), "-l", str(size), "-m", str(total)]
    command += ["-f", "bench@example.ru", "-t", "sink@example.ru", host]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return total / (time.perf_counter() - started)


def main_figures(args: argparse.Namespace) -> None:
    print(
        f"digest send benchmark: {args.subscribers} subscribers, {args.connections} connections,"
        f" sink: {find_sink()} (Postfix smtp-sink)"
    )
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        started = time.perf_counter()
        services = setup(Path(tmp), args.subscribers, args.database_url, args.connections)
        print(
            f"set-up (demo data, {args.subscribers} subscribers): "
            f"{time.perf_counter() - started:.1f} s on {services.settings.database.split(':')[0]}"
        )
        for key, (first, warm) in measure_render(services).items():
            print(
                f"render+inline, variant {key!r}: {first:.1f} ms in the build, {warm:.1f} ms again"
            )
        us, size = measure_compose(services, min(args.subscribers, 20000))
        print(f"personalise+compose: {us:.1f} µs per subscriber ({size / 1024:.0f} KB message)")
        messages = sample_messages(services)
        size = round(mean(len(m) for m in messages))
    cores = os.cpu_count() or 1
    ways = {
        "1 sender, one command at a time (before)": {
            "DIGEST_SENDERS": "1",
            "DIGEST_SMTP_PIPELINING": "0",
        },
        "1 sender, pipelining": {"DIGEST_SENDERS": "1", "DIGEST_SMTP_PIPELINING": "1"},
        f"{cores} senders, pipelining": {"DIGEST_SENDERS": str(cores)},
    }
    with smtp_sink() as url:
        ceiling = smtp_source(url, size, args.subscribers, args.connections)
        before = run_async(baseline(url, messages, args.subscribers, args.connections))
        rates = {way: fresh_send(args, url, extra, args.subscribers) for way, extra in ways.items()}
        after = run_async(baseline(url, messages, args.subscribers, args.connections))
    base = mean([before, after])
    if ceiling is not None:
        print(
            f"Postfix smtp-source, {args.connections} sessions, {size / 1024:.0f} KB: "
            f"{ceiling:,.0f} msg/s (this machine's ceiling into the sink)"
        )
    print(
        f"baseline aiosmtplib sendmail(bytes): {base:,.0f} msg/s "
        f"(before {before:,.0f}, after {after:,.0f})"
    )
    for way, run in rates.items():
        share = f", {run.rate / ceiling:.0%} of smtp-source" if ceiling else ""
        print(
            f"end to end with delivery tracking, {way}: {run.rate:,.0f} msg/s ({run.sent} sent"
            f"{share}); digest's CPU {run.cpu_us:,.0f} µs per message, machine {run.busy:.0%} busy"
        )
    one, many = (rates[w] for w in list(ways)[1:])
    single, multi = one.rate, many.rate
    print(f"ratio {cores} senders / 1 sender: {multi / single:.2f}× (issue 16's target: 1.6×)")
    # What the senders cost per message, with one and with several: equal costs
    # mean nothing is lost to sharing, and the speed-up is bounded by free cores.
    print(
        f"CPU per message, {cores} senders / 1 sender: {many.cpu_us / one.cpu_us:.2f}× "
        f"(1 sender leaves {1 - one.busy:.0%} of the machine idle for the others)"
    )
    print(f"ratio end to end / baseline: {multi / base:.0%}")
    if ceiling is not None:
        print(f"ratio end to end / smtp-source: {multi / ceiling:.0%} (issue 16's target: 40 %)")
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    whole_command(args)
    dkim_rate(args, min(args.subscribers, 5000))


def whole_command(args: argparse.Namespace) -> None:
    """Issue 31 §5: `digest send` as an operator runs it, a process timed from exec
    to exit, beside its sending loop (the first message accepted to the last, from
    the database): where each second goes."""
    from sqlalchemy import func, select

    from digest.models import Delivery

    cores = str(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="digest-whole-") as work, smtp_sink() as url:
        services = setup(Path(work), args.subscribers, args.database_url, args.connections)
        env = {**os.environ, "DIGEST_SMTP_URL": url, "DIGEST_SENDERS": cores}
        digest = str(Path(sys.executable).with_name("digest"))
        started = time.time()
        subprocess.run([digest, "--version"], env=env, check=True, capture_output=True)  # nosec B603
        startup = time.time() - started
        started = time.time()
        done = subprocess.run(  # nosec B603: fixed arguments
            [digest, "--log-json", "-v", "send", "daily", "--date", DAY.isoformat()],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        ended = time.time()
        with services.factory() as session:
            first, last, sent = session.execute(
                select(func.min(Delivery.sent_at), func.max(Delivery.sent_at), func.count())
                .where(Delivery.sent_at.is_not(None))
            ).one()  # fmt: skip
    assert first is not None and last is not None  # nosec B101: the send sent
    whole, before, after = ended - started, first.timestamp() - started, ended - last.timestamp()
    loop = whole - before - after
    print(
        f"the whole `digest send` of {sent:,} readers, {cores} senders: {whole:.1f} s from exec "
        f"to exit, {sent / whole:,.0f} msg/s; the loop {loop:.1f} s ({sent / loop:,.0f} msg/s)"
    )
    for line in done.stderr.splitlines():  # what the command logged, on the same clock
        with contextlib.suppress(ValueError, KeyError):
            event = json.loads(line)
            at = datetime.fromisoformat(event["ts"]).timestamp() - started
            print(f"  {at:6.2f} s  {event['msg'][:100]}")
    print(
        f"  before the first message {before:.1f} s (the interpreter and imports "
        f"{startup:.2f} s, then the settings, the edition's build and render, the enqueue, "
        f"the senders' start); after the last {after:.1f} s (the last outcomes, the "
        f"senders' end, the summary)"
    )


def dkim_rate(args: argparse.Namespace, subscribers: int) -> None:
    """The same send with DKIM off, RSA on, RSA + Ed25519 on, and the floor (above),
    in one run; and the cost of signing one message in process (OpenSSL through
    cryptography)."""
    runs: dict[str, list[Send]] = {}
    signs: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="digest-dkim-") as tmp:
        rsa_key, ed_key = Path(tmp) / "rsa.pem", Path(tmp) / "ed.pem"
        keygen(rsa_key, "bench", "vpk.example.ru")
        keygen(ed_key, "bench-ed", "vpk.example.ru", kind="ed25519")
        rsa = {"DIGEST_DKIM_KEY_FILE": str(rsa_key)}
        settings = {
            "off": {},
            "floor": rsa,
            "rsa": rsa,
            "rsa+ed25519": {**rsa, "DIGEST_DKIM_ED25519_KEY_FILE": str(ed_key)},
        }
        cores = str(os.cpu_count() or 1)
        with smtp_sink() as url:
            # Taken in turn, three times: the CPU's speed drifts between runs.
            for name, extra in [*settings.items(), *list(settings.items())[:3] * 2]:
                with signing_floor() if name == "floor" else contextlib.nullcontext():
                    run = fresh_send(args, url, {**extra, "DIGEST_SENDERS": cores}, subscribers)
                runs.setdefault(name, []).append(run)
                print(
                    f"end to end, {cores} senders, DKIM {name}: {run.rate:,.0f} msg/s "
                    f"({run.sent} sent; digest's CPU {run.cpu_us:,.0f} µs per message)"
                )
        services = setup(Path(tmp), 200, None, args.connections)
        messages = sample_messages(services, 200)
        for name, keys in (
            ("rsa", [DkimKey.load(rsa_key, "bench", "vpk.example.ru")]),
            ("ed25519", [DkimKey.load(ed_key, "bench-ed", "vpk.example.ru")]),
        ):
            signs[name] = sign_us(Signer(keys), messages)
            print(
                f"signing one {len(messages[0]) // 1024} KB message in process, {name}: "
                f"{signs[name]:,.0f} µs of CPU"
            )
        # The bare signature and digest's, interleaved message by message: the CPU's
        # speed drifts between runs by a third here, so apart they compare nothing.
        bare, signs["rsa"] = interleaved_us(rsa_key, messages)
    openssl = openssl_rsa_us()
    rate = {name: median([r.rate for r in done]) for name, done in runs.items()}
    print(
        f"DKIM on / off: RSA {rate['rsa'] / rate['off']:.0%}, "
        f"RSA + Ed25519 {rate['rsa+ed25519'] / rate['off']:.0%} (signed in each send loop)"
    )
    print(
        f"one bare RSA-2048 signature (cryptography, the same key): {bare:,.0f} µs"
        + (f"; openssl speed rsa2048: {openssl:,.0f} µs" if openssl else "")
    )
    # Issue 31 §6, in the send: what each signer adds to a message's CPU over DKIM
    # off, round by round. The floor adds more to a send than its signature costs
    # back to back (the rest of a message's work grows as the rate falls): that
    # much any signer pays, and what digest adds is measured against it.
    added = [r.cpu_us - o.cpu_us for r, o in zip(runs["rsa"], runs["off"], strict=True)]
    floor = [f.cpu_us - o.cpu_us for f, o in zip(runs["floor"], runs["off"], strict=True)]
    ratios = sorted(a / f for a, f in zip(added, floor, strict=True))
    print(
        f"in the send, CPU a message over DKIM off: digest's signer "
        f"{', '.join(f'{a:,.0f}' for a in added)} µs; the RSA signature alone "
        f"{', '.join(f'{f:,.0f}' for f in floor)} µs; digest's / the signature's "
        f"{', '.join(f'{r:.2f}×' for r in ratios)} (median {median(ratios):.2f}×; "
        f"issue 31's target: ≤ 1.3×)"
    )
    print(
        f"in process: digest's {signs['rsa']:,.0f} µs, {signs['rsa'] / bare:.2f}× the bare "
        f"signature; the send's {median(added):,.0f} µs is {median(added) / bare:.2f}× it"
    )


def sign_us(signer: Signer, messages: list[bytes], rounds: int = 5) -> float:
    started = time.process_time()
    for data in messages * rounds:
        signer.sign(data)
    return (time.process_time() - started) / (len(messages) * rounds) * 1e6


def interleaved_us(path: Path, messages: list[bytes], rounds: int = 3) -> tuple[float, float]:
    """(one bare RSA-2048 PKCS#1 v1.5 signature of a header block's size, digest's
    whole DKIM signature of a message), µs of CPU, taken in turn: the floor under
    any DKIM signer with this key, and ours."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)  # nosec B101: our own key, made above
    signer = Signer([DkimKey.load(path, "bench", "vpk.example.ru")])
    block = b"x" * 300
    bare = ours = 0.0
    for data in messages * rounds:
        started = time.process_time()
        key.sign(block, padding.PKCS1v15(), hashes.SHA256())
        middle = time.process_time()
        signer.sign(data)
        bare, ours = bare + middle - started, ours + time.process_time() - middle
    count = len(messages) * rounds
    return bare / count * 1e6, ours / count * 1e6


def openssl_rsa_us() -> float | None:
    """``openssl speed rsa2048``'s signing time, µs (None without openssl)."""
    binary = shutil.which("openssl")
    if binary is None:
        return None
    done = subprocess.run(  # nosec B603: fixed arguments
        [binary, "speed", "-seconds", "2", "rsa2048"], capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("rsa 2048 bits"):
            return float(line.split()[3].rstrip("s")) * 1e6
    return None


def rss_child(args: argparse.Namespace) -> None:
    os.environ["DIGEST_SENDERS"] = "1"  # one process: its own peak is the figure
    with tempfile.TemporaryDirectory(prefix="digest-rss-") as tmp:
        services = setup(Path(tmp), args.subscribers, args.database_url, args.connections)
        with smtp_sink() as url:
            run = end_to_end(services, url)
    print(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "sent": run.sent,
                "rate": run.rate,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def rss_compare(args: argparse.Namespace) -> None:
    sizes = [int(n) for n in args.rss.split(",")]
    results = []
    for n in sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                "--subscribers",
                str(n),
                "--connections",
                str(args.connections),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{n:>7} subscribers: peak RSS {r['peak_rss_mb']:.0f} MB, "
            f"{r['rate']:,.0f} msg/s end to end, {r['sent']} sent"
        )
    first, last = results[0], results[-1]
    print(
        f"peak RSS ratio {last['subscribers']}/{first['subscribers']}: "
        f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--rss", help="compare peak RSS for subscriber counts, e.g. 10000,100000")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--dkim", action="store_true", help="only the DKIM figures (off / RSA / RSA + Ed25519)"
    )
    parser.add_argument("--whole", action="store_true", help="only the whole command's figure")
    args = parser.parse_args()
    if args.whole:
        whole_command(args)
    elif args.dkim:
        dkim_rate(args, min(args.subscribers, 5000))
    elif args.rss_child:
        rss_child(args)
    elif args.rss:
        rss_compare(args)
    else:
        main_figures(args)


if __name__ == "__main__":
    main()
