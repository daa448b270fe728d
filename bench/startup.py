"""How long `digest` takes to answer (issue 26 §3): `--version`, `--help`,
`digest status` (the reports alone), and `digest editors list` and `digest
schedules` (commands that wire the services: each loads the service it asks for)
on a SQLite database with one sent edition, each the mean wall time of N runs,
beside a bare interpreter measured in the same run.

    python bench/startup.py --runs 20

The slowest imports of `digest status` follow (``python -X importtime``). The
figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess  # nosec B404: the command under measurement, with fixed arguments
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGEST = Path(sys.executable).with_name("digest")


def mean_seconds(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)  # nosec B603
        times.append(time.perf_counter() - start)
    return statistics.mean(times)


def slowest_imports(argv: list[str], env: dict[str, str], top: int) -> list[str]:
    done = subprocess.run(  # nosec B603
        [sys.executable, "-X", "importtime", "-m", "digest", *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            rows.append((int(parts[1]), parts[2].strip()))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)[:top]]


def demo_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=f"sqlite:///{folder / 'digest.sqlite3'}",
        DIGEST_VAR_DIR=str(folder / "var"),
        DIGEST_SECRET_KEY=secrets.token_urlsafe(32),
        DIGEST_CONFIG=str(folder / "digest.toml"),
        DIGEST_SENDERS="1",
    )
    (folder / "digest.toml").write_text("", encoding="utf-8")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = demo_env(Path(tmp))
        # One edition sent to 50 readers, so `status` reads real rows.
        subprocess.run(  # nosec B603
            [str(DIGEST), "demo", "--subscribers", "50", "--date", "2026-11-25"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        bare = mean_seconds([sys.executable, "-c", "pass"], env, args.runs)
        print(f"python -c pass: {bare:.3f} s (mean of {args.runs})")
        commands = (["--version"], ["--help"], ["status"], ["status", "1"])
        for command in (*commands, ["editors", "list"], ["schedules"]):
            took = mean_seconds([str(DIGEST), *command], env, args.runs)
            print(f"digest {' '.join(command)}: {took:.3f} s ({took / bare:.1f}× a bare python)")
        print("slowest top-level imports of `digest status`:")
        for line in slowest_imports([str(DIGEST), "status"], env, 8):
            print("  " + line)


if __name__ == "__main__":
    main()
