#!/usr/bin/env python3
"""A real SMTP server for tests (aiosmtpd) that keeps every message it receives as a file.

    python smtp_sink.py --port PORT --dir DIR [--host 127.0.0.1] [--tls-cert C --tls-key K]

Each message lands in DIR as `<time ns>-<n>.eml`: the raw RFC 5322 message as received, with
`X-Sink-Mail-From` and `X-Sink-Rcpt-To` headers on top saying what the envelope held. A file
is written to a temporary name and renamed, so a reader never sees half a message. Node tests
(postal-mime), pytest (`email`) and Rust tests read codes from these files.

`--tls-cert`/`--tls-key` offer STARTTLS with that certificate (the server then requires it,
like a relay that refuses plain text). The process prints `ready <port>` on stdout once it
accepts connections and runs until SIGTERM or SIGINT. Needs `aiosmtpd` (pinned in
tests/interop/python/requirements.txt, installed into tests/interop/.venv by run-python.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import ssl
import sys
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class Keep:
    """The aiosmtpd handler: writes each accepted message into `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        head = (
            f"X-Sink-Mail-From: {envelope.mail_from}\r\n"
            f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        name = f"{time.time_ns()}-{next(self.counter):04d}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(head + data)
        os.replace(tmp, self.directory / name)
        return "250 Message accepted for delivery"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    tls = None
    if a.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)
    controller = Controller(
        Keep(a.dir),
        hostname=a.host,
        port=a.port,
        tls_context=tls,
        require_starttls=tls is not None,
        # Accept any size and UTF-8 addresses; a test sink refuses nothing it can store.
        data_size_limit=0,
        enable_SMTPUTF8=True,
    )
    controller.start()
    print(f"ready {a.port}", flush=True)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
