"""The courier against the real binary and a real SMTP server (aiosmtpd: tests/interop/smtp_sink.py).

A recovery request (`GET /self-service/recovery/api`, then `POST /self-service/recovery?flow=…`
with `{"method": "code", "email": …}`) queues a message in the same transaction that saves the
flow; these tests check that it reaches the SMTP server whatever happens in between:
- the SMTP server is down when the message is queued: the courier retries with backoff and
  delivers once the server is up (every failed attempt is in the admin API's dispatch log);
- portcullis is SIGKILLed right after the request was answered: the restarted server sends it;
- portcullis is SIGKILLed in the middle of the SMTP conversation: after the claim's lease has run
  out the restarted server sends it again, so the mail still arrives.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, free_port, http

SINK = REPO_ROOT / "tests" / "interop" / "smtp_sink.py"


class Sink:
    """`smtp_sink.py` in a child process on a fixed port, so it can be stopped and started."""

    def __init__(self, port: int, directory: Path):
        self.port, self.dir = port, directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sink":
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK), "--port", str(self.port), "--dir", str(self.dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), f"the SMTP sink did not start: {line}{self.proc.stdout.read()}"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def mails_to(self, to: str) -> list[email.message.EmailMessage]:
        out = []
        for f in sorted(self.dir.glob("*.eml")):
            m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            if to.lower() in str(m["To"]).lower():
                out.append(m)
        return out

    def wait_for(self, to: str, n: int = 1, timeout: float = 30) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.mails_to(to)
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise AssertionError(f"no mail #{n} to {to} within {timeout}s (have {len(self.mails_to(to))})")


@pytest.fixture
def sink(tmp_path):
    s = Sink(free_port(), tmp_path / "mail")
    yield s
    s.stop()


def courier_env(port: int, **extra: str) -> dict[str, str]:
    env = dict(
        COURIER_SMTP_CONNECTION_URI=f"smtp://127.0.0.1:{port}/?disable_starttls=true",
        COURIER_SMTP_FROM_ADDRESS="accounts@portcullis.test",
        COURIER_SMTP_FROM_NAME="Portcullis Accounts",
        COURIER_SMTP_HEADERS='{"X-Portcullis-Test": "courier"}',
        # Short waits so a test sees several attempts in seconds.
        COURIER_RETRY_BACKOFF="300ms",
        COURIER_MESSAGE_RETRIES="30",
        COURIER_WORKER_PULL_WAIT="100ms",
    )
    env.update(extra)
    return env


def request_recovery(server, address: str) -> None:
    """The message-producing request: a native recovery flow asked to send a code."""
    flow = server.get("/self-service/recovery/api")
    assert flow.status == 200, flow
    r = server.post(f"/self-service/recovery?flow={flow.json['id']}", {"method": "code", "email": address})
    assert r.status == 200, r
    assert r.json["state"] == "sent_email", r


def messages_to(server, address: str) -> list[dict]:
    r = http("GET", f"{server.admin}/admin/courier/messages?recipient={address}")
    assert r.status == 200, r
    return r.json


def message(server, mid: str) -> dict:
    r = http("GET", f"{server.admin}/admin/courier/messages/{mid}")
    assert r.status == 200, r
    return r.json


def wait_until(what, check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = check()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def code_of(mail: email.message.EmailMessage) -> str:
    text = mail.get_body(("plain",)).get_content()
    m = re.search(r"\b(\d{6})\b", text)
    assert m, text
    return m.group(1)


def test_a_message_queued_while_smtp_is_down_is_delivered_once_it_comes_up(portcullis_server, sink):
    server = portcullis_server(**courier_env(sink.port))
    _, address = server.create_user()
    request_recovery(server, address)
    [queued] = messages_to(server, address)
    assert queued["template_type"] == "recovery_code_valid"
    # Nobody listens: attempts fail, each logged, and the message stays queued.
    def two_failures():
        m = message(server, queued["id"])
        return m if len(m["dispatches"]) >= 2 else None

    failed = wait_until("two failed attempts", two_failures)
    assert failed["status"] in ("queued", "processing"), failed
    assert all(d["status"] == "failed" and d["error"]["message"] for d in failed["dispatches"]), failed
    sink.start()
    [mail] = sink.wait_for(address)
    # The mail as sent: sender, custom header, multipart with the same code in both parts.
    assert mail["From"].addresses[0].addr_spec == "accounts@portcullis.test"
    assert mail["From"].addresses[0].display_name == "Portcullis Accounts"
    assert mail["X-Portcullis-Test"] == "courier"
    assert mail["Subject"] == queued["subject"]
    assert mail.get_content_type() == "multipart/alternative"
    code = code_of(mail)
    assert code in mail.get_body(("html",)).get_content()
    assert code in queued["body"]
    done = wait_until("sent", lambda: (m := message(server, queued["id"]))["status"] == "sent" and m)
    assert done["dispatches"][-1]["status"] == "success"
    assert done["send_count"] == len(done["dispatches"]) >= 3
    # Delivered once, however many attempts failed before.
    time.sleep(0.5)
    assert len(sink.mails_to(address)) == 1


def test_a_message_acknowledged_before_sigkill_is_delivered_after_restart(portcullis_server, sink, tmp_path):
    sink.start()
    dsn = f"sqlite://{tmp_path / 'kill.sqlite'}"
    # The first instance polls the queue once an hour: the message cannot leave before the kill.
    first = portcullis_server(dsn=dsn, **courier_env(sink.port, COURIER_WORKER_PULL_WAIT="1h"))
    _, address = first.create_user()
    time.sleep(0.5)  # past the instance's first (empty) round
    request_recovery(first, address)
    first.kill()
    assert sink.mails_to(address) == []
    second = portcullis_server(dsn=dsn, **courier_env(sink.port))
    [mail] = sink.wait_for(address)
    [m] = messages_to(second, address)
    assert code_of(mail) in m["body"]
    wait_until("sent", lambda: message(second, m["id"])["status"] == "sent")


def test_a_send_cut_off_by_sigkill_is_sent_again_after_the_lease(portcullis_server, sink, tmp_path):
    """The SMTP server accepts the connection and says nothing; portcullis dies mid-send. The
    message stays claimed (processing) until its lease runs out, then the restarted server
    sends it."""
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", sink.port))
    silent.listen()
    connected = threading.Event()
    held = []

    def accept():
        try:
            conn, _ = silent.accept()
            held.append(conn)
            connected.set()
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    dsn = f"sqlite://{tmp_path / 'lease.sqlite'}"
    env = courier_env(sink.port, COURIER_WORKER_LEASE="6s")
    first = portcullis_server(dsn=dsn, **env)
    _, address = first.create_user()
    request_recovery(first, address)
    assert connected.wait(10), "the courier never connected"
    first.kill()
    for c in held:
        c.close()
    silent.close()
    claimed_at = time.monotonic()
    sink.start()
    second = portcullis_server(dsn=dsn, **env)
    [m] = messages_to(second, address)
    assert m["status"] == "processing", "the killed instance's claim is still held"
    [mail] = sink.wait_for(address, timeout=30)
    assert time.monotonic() - claimed_at > 3, "not re-sent before the lease ran out"
    done = wait_until("sent", lambda: (x := message(second, m["id"]))["status"] == "sent" and x)
    # The cut-off attempt left no dispatch; the one that went through is the only one.
    assert [d["status"] for d in done["dispatches"]] == ["success"]
    assert code_of(mail) in done["body"]
