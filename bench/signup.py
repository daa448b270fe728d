"""How long the subscription box takes to answer a new address and a known one
(issue 24 §3: 58 ms against 7 ms told who subscribes), measured in the same run
against `digest serve`'s app under uvicorn and a relay that takes 50 ms a message.

    python bench/signup.py --requests 100

Requests alternate new and known addresses, each from its own loopback address
(127.0.0.0/8 is all ours) so the per-network limit does not refuse them. The
figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest import db, demo  # noqa: E402
from digest.capture import CaptureHandler, CaptureServer  # noqa: E402
from digest.config import load_settings  # noqa: E402
from digest.web.app import WebContext, create_app  # noqa: E402
from tests.support.serving import serving  # noqa: E402


class SlowRelay(CaptureHandler):
    """A relay that takes 50 ms to accept a message, as one across a network does."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


def ask(base: str, address: str, source: str) -> float:
    """Seconds until the answer to one POST /subscribe came back."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), source_address=(source, 0))
    body = urlencode({"email": address}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    start = time.perf_counter()
    connection.request("POST", "/subscribe", body, headers)
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    connection.close()
    assert response.status == 200, response.status
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100, help="of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, CaptureServer(SlowRelay()) as relay:
        os.environ.update(
            DIGEST_VAR_DIR=str(Path(tmp) / "var"),
            DIGEST_SECRET_KEY="bench-" + "k" * 32,
            DIGEST_SMTP_URL=relay.url,
            DIGEST_CONFIG=str(Path(tmp) / "none.toml"),
        )
        (Path(tmp) / "none.toml").write_text("")
        cfg = load_settings()
        engine = db.make_engine(cfg.database)
        db.upgrade(engine)
        factory = db.session_factory(engine)
        demo.add_subscribers(factory, args.requests, now=datetime.now(UTC))
        known = [demo.reader_address(n) for n in range(1, args.requests + 1)]
        times: dict[str, list[float]] = {"new": [], "known": []}
        with serving(create_app(WebContext(cfg, factory))) as base:
            for n in range(args.requests):
                source = f"127.0.{n // 250}.{n % 250 + 2}"
                times["new"].append(ask(base, f"new{n}@example.ru", source))
                times["known"].append(ask(base, known[n], source))
            deadline = time.monotonic() + 60
            while len(relay.messages) < args.requests and time.monotonic() < deadline:
                time.sleep(0.1)
        engine.dispose()
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in times.items()}
    print(f"{'address':<8} {'median ms':>10} {'p90 ms':>8}")
    for kind in ("known", "new"):
        print(f"{kind:<8} {medians[kind]:>10.1f} {p90[kind]:>8.1f}")
    print(f"new / known (median): {medians['new'] / medians['known']:.2f}")
    print(f"confirmations the relay took afterwards: {len(relay.messages)} of {args.requests}")


if __name__ == "__main__":
    main()
