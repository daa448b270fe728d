"""The capture relay's CPU per message (issue 26): aiosmtpd's own DATA, read a
line at a time, beside ours (``digest.capture.WholeDataSMTP``), read a message at a time,
measured in the same run on the same letter-sized message sent N times over one
connection by smtplib in this process (client and server both counted: the
suite's tests run both in one process too).

    python bench/capture.py --messages 2000

Prints CPU milliseconds per message for each and the ratio; never asserts."""

from __future__ import annotations

import argparse
import smtplib
import time

from aiosmtpd.controller import Controller

from digest.capture import CaptureHandler, CaptureServer, free_port

# A letter's shape: headers, then quoted-printable lines of HTML and text, some
# of them starting with a dot (as smtplib stuffs them) or ending in one.
LINE = '<td style=3D"padding:0 16px">Выпуск дня: ВПК, армия, флот, космос.</td>=\r\n'
BODY = (
    "From: digest@vpk.example.ru\r\nTo: reader@example.ru\r\nSubject: bench\r\n"
    "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    "\r\n" + LINE * 600 + ".a line with a leading dot\r\nend.\r\n"
).encode("utf-8")


def cpu_per_message(port: int, messages: int) -> float:
    """CPU milliseconds per message, this process (client and server)."""
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo("bench.local")
        started = time.process_time()
        for _ in range(messages):
            client.sendmail("digest@vpk.example.ru", ["reader@example.ru"], BODY)
        return 1000 * (time.process_time() - started) / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    stock = Controller(CaptureHandler(keep=False), hostname="127.0.0.1", port=free_port())
    stock.start()
    try:
        line_at_a_time = cpu_per_message(stock.port, args.messages)
    finally:
        stock.stop()
    with CaptureServer(CaptureHandler(keep=False)) as ours:
        whole = cpu_per_message(ours.port, args.messages)
    print(f"{args.messages} messages of {len(BODY)} bytes over one connection")
    print(f"aiosmtpd's DATA (a line at a time):  {line_at_a_time:.2f} ms CPU a message")
    print(f"the capture relay's (a message whole): {whole:.2f} ms CPU a message")
    print(f"ratio: {whole / line_at_a_time:.2f}× ({line_at_a_time / whole:.1f}× less CPU)")


if __name__ == "__main__":
    main()
