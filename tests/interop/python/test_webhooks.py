"""Events, signed webhooks and the Clerk Backend API, checked with the real Python clients.

- A webhook receiver in this process (`Receiver`: `http.server` on 127.0.0.1:0) verifies every
  request with svix's `Webhook(secret).verify`, once with the `svix-*` and once with the
  `webhook-*` headers, records raw bodies and headers, can answer 500 or 410 on demand, and
  de-duplicates by message id like a real consumer.
- A Django receiver written the way Clerk's docs describe (verify with svix, then create, update
  or delete a local user row keyed by the Clerk user id; an in-memory SQLite table through the
  Django ORM) is served over real HTTP and must end up with exactly what `GET /v1/users` says.
- The `clerk-backend-api` SDK drives the Clerk face (users CRUD, filters, count, metadata merge
  and delete-by-null, verify_password, ban, sessions, JWKS); its Pydantic models validate every
  response, so a missing or mistyped field fails as `ResponseValidationError`.
- Faults: a 500 retried after 5 s, a 410 that disables the endpoint, and SIGKILL in the middle
  of a registration burst on SQLite and on PostgreSQL.

The SIGKILL scenario is split in two tests because a restarted server resumes delivery only
when the killed instance's endpoint lease (30 s) runs out: the burst, the kill and the restart
run first (`test_sigkill_mid_burst_*`, the first tests in this file), the rest of the file runs
while the lease expires, and `test_after_sigkill_*` (the last tests) check what was delivered.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from clerk_backend_api import Clerk, models
from clerk_backend_api.utils import BackoffStrategy, RetryConfig, unmarshal
from svix.webhooks import Webhook, WebhookVerificationError

from conftest import PASSWORD, Server, http

# clerk-backend-api reads every query-parameter field of its request models, deprecated ones
# included, and warns about those on each list/count call: noise from the SDK, not from us.
pytestmark = pytest.mark.filterwarnings(r"ignore:warning. \*\* DEPRECATED \*\*:DeprecationWarning")

CLERK_KEY = "sk_test_portcullis_interop_0123456789"
NO_RETRIES = RetryConfig("none", BackoffStrategy(1, 1, 1, 1), False)
EVENT_TYPES = {
    "user.created",
    "user.updated",
    "user.deleted",
    "session.created",
    "session.revoked",
    "session.removed",
}
USER_ID = re.compile(r"^user_[0-9a-f]{32}$")


# --------------------------------------------------------------------------- helpers


def unique_email(tag: str = "hook") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def clerk_user_id(identity_id: str) -> str:
    return "user_" + identity_id.replace("-", "")


def identity_id(user_id: str) -> str:
    return str(uuid.UUID(user_id.removeprefix("user_")))


def clerk(server: Server, key: str = CLERK_KEY) -> Clerk:
    return Clerk(bearer_auth=key, server_url=f"{server.admin}/v1", retry_config=NO_RETRIES)


def register(server: Server, email: str | None = None, first="Ada", last="Lovelace"):
    """A native (API) self-service registration; returns (identity id, session token, email)."""
    email = email or unique_email("reg")
    flow = http("GET", f"{server.public}/self-service/registration/api")
    assert flow.status == 200, flow
    r = http(
        "POST",
        f"{server.public}/self-service/registration?flow={flow.json['id']}",
        {
            "method": "password",
            "password": PASSWORD,
            "traits": {"email": email, "name": {"first": first, "last": last}},
        },
    )
    assert r.status == 200, r
    return r.json["identity"]["id"], r.json["session_token"], email


def update_profile(server: Server, token: str, traits: dict) -> dict:
    """A native settings flow, method `profile`; returns the updated identity."""
    auth = {"X-Session-Token": token}
    flow = http("GET", f"{server.public}/self-service/settings/api", headers=auth)
    assert flow.status == 200, flow
    r = http(
        "POST",
        f"{server.public}/self-service/settings?flow={flow.json['id']}",
        {"method": "profile", "traits": traits},
        auth,
    )
    assert r.status == 200 and r.json["state"] == "success", r
    return r.json["identity"]


def admin_patch(server: Server, iid: str, ops: list) -> dict:
    r = http("PATCH", f"{server.admin}/admin/identities/{iid}", ops)
    assert r.status == 200, r
    return r.json


def add_endpoint(server: Server, url: str, **body) -> dict:
    r = http("POST", f"{server.admin}/admin/webhooks", {"url": url, **body})
    assert r.status == 201, r
    ep = r.json
    assert ep["secret"].startswith("whsec_") and ep["enabled"] is True, ep
    return ep


def endpoint_state(server: Server, ep_id: str) -> dict:
    r = http("GET", f"{server.admin}/admin/webhooks/{ep_id}")
    assert r.status == 200, r
    return r.json


def attempts(server: Server, ep_id: str) -> list[dict]:
    r = http("GET", f"{server.admin}/admin/webhooks/{ep_id}/attempts")
    assert r.status == 200, r
    return sorted(r.json, key=lambda a: a["attempted_at"])


def attempts_when(server: Server, ep_id: str, n: int, timeout: float = 3) -> list[dict]:
    """The attempt log once it has `n` entries: the receiver can see a request before the
    server has recorded the attempt."""
    deadline = time.monotonic() + timeout
    while len(log := attempts(server, ep_id)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


def header_sets(headers: dict) -> dict[str, dict]:
    """The two header families as separate dicts, so svix verifies each on its own."""
    return {
        prefix: {f"{prefix}-{k}": headers.get(f"{prefix}-{k}") for k in ("id", "timestamp", "signature")}
        for prefix in ("svix", "webhook")
    }


def check_clerk_event(evt: dict) -> None:
    """The Clerk envelope, and `data` validated by the SDK's own Pydantic models."""
    assert evt["object"] == "event", evt
    assert evt["type"] in EVENT_TYPES, evt
    assert evt["instance_id"].startswith("ins_"), evt
    assert isinstance(evt["event_attributes"], dict), evt
    ts = evt["timestamp"]
    assert isinstance(ts, int) and abs(ts - time.time() * 1000) < 10 * 60 * 1000, f"ms timestamp: {ts}"
    data = evt["data"]
    if evt["type"] == "user.deleted":
        deleted = unmarshal(data, models.DeletedObject)
        assert deleted.object == "user" and deleted.deleted is True and USER_ID.match(deleted.id), data
    elif evt["type"].startswith("user."):
        user = unmarshal(data, models.User)
        assert USER_ID.match(user.id), data
    else:
        session = unmarshal(data, models.Session)
        assert session.id.startswith("sess_") and USER_ID.match(session.user_id), data


# --------------------------------------------------------------------------- receiver


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float  # time.monotonic() on arrival

    @property
    def msg_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def timestamp(self) -> int:
        return int(self.headers.get("webhook-timestamp", "0"))

    @property
    def signatures(self) -> list[str]:
        return self.headers.get("webhook-signature", "").split(" ")

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def type(self) -> str:
        return self.json["type"]


class Receiver:
    """A webhook endpoint in the test process. `answers` holds the status codes for the next
    requests (then 200); a request that fails verification is answered 400, as a real
    consumer would, and its reason is kept in `problems`."""

    def __init__(self):
        self.secret: str | None = None
        self.answers: deque[int] = deque()
        self.requests: list[Delivery] = []
        self.problems: list[str] = []
        self._cv = threading.Condition()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = rx._receive(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def _check(self, headers: dict, body: bytes) -> list[str]:
        sets = header_sets(headers)
        problems = []
        if [*sets["svix"].values()] != [*sets["webhook"].values()]:
            problems.append(f"svix-* and webhook-* headers differ: {sets}")
        if not headers.get("content-type", "").startswith("application/json"):
            problems.append(f"content-type {headers.get('content-type')!r}")
        if self.secret is None:
            return problems + ["a request arrived before the test set the receiver's secret"]
        for name, hs in sets.items():
            try:
                Webhook(self.secret).verify(body, hs)
            except WebhookVerificationError as e:
                problems.append(f"{name}-* headers do not verify ({e}): {hs} {body[:200]!r}")
        return problems

    def _receive(self, headers: dict, body: bytes) -> int:
        problems = self._check(headers, body)
        with self._cv:
            status = self.answers.popleft() if self.answers else 200
            if problems:
                status = 400
            self.requests.append(Delivery(headers, body, status, time.monotonic()))
            self.problems.extend(problems)
            self._cv.notify_all()
        return status

    def accepted(self) -> list[Delivery]:
        """One delivery per message id (the first answered 2xx), in arrival order."""
        seen, out = set(), []
        with self._cv:
            for d in self.requests:
                if 200 <= d.status < 300 and d.msg_id not in seen:
                    seen.add(d.msg_id)
                    out.append(d)
        return out

    def events(self) -> list[dict]:
        return [d.json for d in self.accepted()]

    def wait(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cv:  # re-entrant: `pred` may call accepted()
            while True:
                ok = pred(self)
                if ok:
                    return ok
                left = deadline - time.monotonic()
                if left <= 0:
                    types = [(d.status, d.type) for d in self.requests[-20:]]
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last requests: {types}")
                self._cv.wait(min(left, 0.1))

    def wait_count(self, n: int, timeout: float = 10) -> list[Delivery]:
        return self.wait(lambda rx: (a := rx.accepted()) and len(a) >= n and a, timeout, f"{n} messages")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make() -> Receiver:
        rx = Receiver()
        made.append(rx)
        return rx

    yield make
    for rx in made:
        rx.close()


@pytest.fixture
def server(portcullis_server) -> Server:
    """A fresh server (fresh SQLite file) with a Clerk secret key."""
    return portcullis_server(CLERK_SECRET_KEYS=json.dumps([CLERK_KEY]))


# --------------------------------------------------------------------------- SIGKILL, part 1

BURST = 300
CRASH_BACKENDS = ["sqlite", "postgres"]


@dataclass
class Crash:
    backend: str
    receiver: Receiver
    endpoint: dict
    acked: dict[str, str]  # identity id -> e-mail, registrations answered 200
    outcomes: list  # per registration: HTTP status of the submit, or the exception's name
    killed_at: float
    server: Server  # the restarted one, same DSN
    skipped: str | None = None


def _try_register(server: Server, acked: dict, lock: threading.Lock):
    email = unique_email("crash")
    try:
        flow = http("GET", f"{server.public}/self-service/registration/api", timeout=15)
        if flow.status != 200:
            return f"flow {flow.status}"
        r = http(
            "POST",
            f"{server.public}/self-service/registration?flow={flow.json['id']}",
            {"method": "password", "password": PASSWORD, "traits": {"email": email, "name": {"first": "K", "last": "Ill"}}},
            timeout=15,
        )
    except Exception as e:  # noqa: BLE001 - the kill cuts requests off in many ways
        return type(e).__name__
    if r.status == 200:
        with lock:
            acked[r.json["identity"]["id"]] = email
    return r.status


def _crash(portcullis_server, backend: str, dsn: str) -> Crash:
    env = {"CLERK_SECRET_KEYS": json.dumps([CLERK_KEY])}
    first = portcullis_server(dsn=dsn, **env)
    rx = Receiver()
    ep = add_endpoint(first, rx.url, events=["user.created"], format="clerk")
    rx.secret = ep["secret"]
    acked: dict[str, str] = {}
    lock = threading.Lock()
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(_try_register, first, acked, lock) for _ in range(BURST)]
        deadline = time.monotonic() + 30
        while len(acked) < BURST // 3 and time.monotonic() < deadline:
            time.sleep(0.002)
        first.kill()
        killed_at = time.monotonic()
        outcomes = [f.result() for f in futures]
    restarted = portcullis_server(dsn=dsn, **env)
    return Crash(backend, rx, ep, dict(acked), outcomes, killed_at, restarted)


@pytest.fixture(scope="module")
def crashes(portcullis_server, request, tmp_path_factory):
    """Both SIGKILL runs, done once for the module (see the module docstring)."""
    runs: dict[str, Crash] = {}
    sqlite_dsn = f"sqlite://{tmp_path_factory.mktemp('crash') / 'crash.sqlite'}"
    runs["sqlite"] = _crash(portcullis_server, "sqlite", sqlite_dsn)
    try:
        pg = request.getfixturevalue("postgres")
    except pytest.skip.Exception as e:
        runs["postgres"] = Crash("postgres", None, {}, {}, [], 0, None, skipped=str(e))
    else:
        runs["postgres"] = _crash(portcullis_server, "postgres", pg.new_database())
    yield runs
    for run in runs.values():
        if run.server:
            run.server.stop()  # before the `postgres` fixture stops the cluster under it
        if run.receiver:
            run.receiver.close()


def _crash_run(crashes, backend) -> Crash:
    run = crashes[backend]
    if run.skipped:
        pytest.skip(run.skipped)
    return run


@pytest.mark.parametrize("backend", CRASH_BACKENDS)
def test_sigkill_mid_burst_keeps_every_acknowledged_registration(crashes, backend):
    run = _crash_run(crashes, backend)
    cut = [o for o in run.outcomes if o != 200]
    assert 0 < len(run.acked) < BURST and cut, (
        f"the kill must land mid-burst: {len(run.acked)} acknowledged, outcomes {set(map(str, run.outcomes))}"
    )
    assert len(run.acked) + len(cut) == BURST
    # Every registration that got its 200 is durable across the crash.
    missing = [
        iid for iid in run.acked if http("GET", f"{run.server.admin}/admin/identities/{iid}").status != 200
    ]
    assert not missing, f"{len(missing)} acknowledged registrations are gone after the restart: {missing[:5]}"


# --------------------------------------------------------------------------- signed, ordered events


def test_every_change_reaches_the_receiver_signed_and_in_order(server, receiver):
    rx = receiver()
    ep = add_endpoint(server, rx.url, format="clerk", description="all events")
    assert ep["events"] == [] and ep["format"] == "clerk" and ep["url"] == rx.url
    rx.secret = ep["secret"]

    iid, token, email = register(server, first="Ada", last="Lovelace")
    uid = clerk_user_id(iid)
    update_profile(server, token, {"email": email, "name": {"first": "Augusta", "last": "King"}})
    with clerk(server) as c:
        sessions = c.sessions.list(user_id=uid)
        assert [s.status for s in sessions] == ["active"], sessions
        assert sessions[0].user_id == uid
        revoked = c.sessions.revoke(session_id=sessions[0].id)
        assert revoked.status == "revoked" and revoked.id == sessions[0].id
        assert c.users.delete(user_id=uid).deleted is True
    r = http("GET", f"{server.public}/sessions/whoami", headers={"X-Session-Token": token})
    assert r.status == 401, r

    got = rx.wait_count(5)
    assert [d.type for d in got] == [
        "user.created",
        "session.created",
        "user.updated",
        "session.revoked",
        "user.deleted",
    ]
    assert rx.problems == [], rx.problems
    assert len(rx.requests) == 5, "nothing is sent twice when every answer is 200"
    assert len({d.msg_id for d in got}) == 5 and all(d.msg_id.startswith("msg_") for d in got)
    for d in got:
        check_clerk_event(d.json)
        assert len(d.signatures) == 1 and d.signatures[0].startswith("v1,"), d.headers
        assert abs(d.timestamp - time.time()) < 60, d.headers
    created, session, updated, revoked_evt, deleted = (d.json["data"] for d in got)
    assert created["id"] == uid and created["object"] == "user"
    assert created["email_addresses"][0]["email_address"] == email
    assert created["primary_email_address_id"] == created["email_addresses"][0]["id"]
    assert (created["first_name"], created["last_name"]) == ("Ada", "Lovelace")
    assert (updated["first_name"], updated["last_name"]) == ("Augusta", "King")
    assert session["id"] == sessions[0].id and session["user_id"] == uid and session["status"] == "active"
    assert revoked_evt["id"] == sessions[0].id and revoked_evt["status"] == "revoked"
    assert deleted == {"object": "user", "id": uid, "deleted": True}


def test_clerk_session_events_embed_the_user(server, receiver):
    """Clerk's `SessionEventPayload` (webhooks 2025-04-15) is the Session plus a required `user`
    (a full User): receivers read `evt.data.user` to sync sign-ins without calling the API."""
    rx = receiver()
    ep = add_endpoint(server, rx.url, events=["session.created"])
    rx.secret = ep["secret"]
    iid, _, email = register(server)
    (d,) = rx.wait_count(1)
    data = d.json["data"]
    check_clerk_event(d.json)
    assert "user" in data, f"session.created data has no `user`: {sorted(data)}"
    user = unmarshal(data["user"], models.User)
    assert user.id == clerk_user_id(iid) and user.email_addresses[0].email_address == email


# A 3 × 2 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAEElEQVR4nGM4oaEBQQxwFgBFdAaR8TH9JAAAAABJRU5ErkJggg==")


def test_a_profile_image_set_through_the_sdk_reaches_the_receiver(server, receiver):
    """`users.set_profile_image` (multipart, as the SDK sends it) sets the picture; the next
    `user.updated` carries its `image_url`, which serves it; removing it clears both."""
    rx = receiver()
    ep = add_endpoint(server, rx.url, events=["user.updated"])
    rx.secret = ep["secret"]
    iid, _, _ = register(server)
    with clerk(server) as c:
        user = c.users.set_profile_image(
            user_id=clerk_user_id(iid), file={"file_name": "me.png", "content": PNG, "content_type": "image/png"}
        )
    assert user.has_image is True and user.image_url.startswith(f"{server.public}/clerk/images/img_"), user
    (d,) = rx.wait_count(1)
    check_clerk_event(d.json)
    assert d.json["data"]["image_url"] == user.image_url
    served = http("GET", user.image_url)
    assert served.status == 200 and served.headers["content-type"] == "image/jpeg", served
    with clerk(server) as c:
        with pytest.raises(models.ClerkErrors) as refused:
            c.users.set_profile_image(
                user_id=clerk_user_id(iid), file={"file_name": "x.svg", "content": b"<svg/>", "content_type": "image/svg+xml"}
            )
        assert refused.value.data.errors[0].code == "form_param_format_invalid"
        removed = c.users.delete_profile_image(user_id=clerk_user_id(iid))
    assert removed.has_image is False and removed.image_url == ""
    assert http("GET", user.image_url).status == 404


def test_session_end_events_carry_the_session_s_own_times(server, receiver):
    """A session ended in bulk (ban: all of a user's sessions revoked; user deletion: sessions
    removed) is described with the session's real `created_at` / `expire_at`, as in
    session.created and `GET /v1/sessions`, not with the time of the event."""
    rx = receiver()
    ep = add_endpoint(server, rx.url, events=["session.created", "session.revoked", "session.removed"])
    rx.secret = ep["secret"]
    banned, _, _ = register(server)
    deleted, _, _ = register(server)
    with clerk(server) as c:
        (listed,) = c.sessions.list(user_id=clerk_user_id(banned))
        time.sleep(0.3)  # so that "now" and the session's creation differ visibly
        c.users.ban(user_id=clerk_user_id(banned))
        c.users.delete(user_id=clerk_user_id(deleted))
    got = [d.json for d in rx.wait_count(4)]
    assert [e["type"] for e in got] == ["session.created", "session.created", "session.revoked", "session.removed"]
    for e in got:
        check_clerk_event(e)
    created = {e["data"]["id"]: e["data"] for e in got[:2]}
    assert created[listed.id]["created_at"] == listed.created_at and created[listed.id]["expire_at"] == listed.expire_at
    wrong = []
    for end in got[2:]:
        data, start = end["data"], created[end["data"]["id"]]
        times = {k: data[k] for k in ("created_at", "expire_at")}
        if times != {k: start[k] for k in times}:
            wrong.append(
                f"{end['type']} (event timestamp {end['timestamp']}) gives {times}, "
                f"session.created gave {({k: start[k] for k in times})}"
            )
    assert not wrong, "\n".join(wrong)
    assert rx.problems == []


def test_native_format_and_event_filters(server, receiver):
    rx = receiver()
    ep = add_endpoint(server, rx.url, format="native", events=["user.created", "user.deleted"])
    rx.secret = ep["secret"]
    iid, _, email = register(server)
    assert http("DELETE", f"{server.admin}/admin/identities/{iid}").status == 204
    got = rx.wait_count(2)
    assert [d.type for d in got] == ["user.created", "user.deleted"]
    created = got[0].json
    assert created["id"] == got[0].msg_id and created["data"]["id"] == iid
    assert created["data"]["traits"]["email"] == email
    assert "config" not in created["data"].get("credentials", {}).get("password", {}), "no hashes"
    assert rx.problems == []


# --------------------------------------------------------------------------- Clerk SDK


def test_clerk_sdk_user_lifecycle(server):
    email, email2 = unique_email("grace"), unique_email("alan")
    ext = f"ext-{uuid.uuid4().hex[:8]}"
    with clerk(server) as c:
        u = c.users.create(
            email_address=[email],
            password=PASSWORD,
            first_name="Grace",
            last_name="Hopper",
            external_id=ext,
            public_metadata={"plan": "free", "limits": {"seats": 5, "projects": 3}},
            private_metadata={"crm": "cus_123"},
        )
        assert isinstance(u, models.User) and USER_ID.match(u.id)
        assert [e.email_address for e in u.email_addresses] == [email]
        assert u.primary_email_address_id == u.email_addresses[0].id
        assert (u.first_name, u.last_name, u.external_id) == ("Grace", "Hopper", ext)
        assert u.password_enabled is True and u.banned is False
        assert u.public_metadata == {"plan": "free", "limits": {"seats": 5, "projects": 3}}
        assert u.private_metadata == {"crm": "cus_123"}
        other = c.users.create(email_address=[email2], first_name="Alan", last_name="Turing")
        assert other.password_enabled is False
        with pytest.raises(models.ClerkErrors) as taken:
            c.users.create(email_address=[email], first_name="Copy")
        assert taken.value.status_code == 422
        assert taken.value.data.errors[0].code == "form_identifier_exists"
        with pytest.raises(models.SDKError) as no_password:
            c.users.verify_password(user_id=other.id, password=PASSWORD)
        assert no_password.value.status_code == 400

        got = c.users.get(user_id=u.id)
        assert (got.id, got.email_addresses[0].email_address, got.first_name) == (u.id, email, "Grace")
        assert got.created_at == u.created_at and isinstance(got.created_at, int)

        def ids(**request):
            return [x.id for x in c.users.list(request=request)]

        both = [u.id, other.id]
        assert ids(email_address=[email]) == [u.id]
        assert ids(email_address=[email.upper(), email2]) == [other.id, u.id], "newest first"
        assert ids(user_id=both, order_by="+created_at") == both
        assert ids(user_id=both, order_by="-created_at", limit=1, offset=1) == [u.id]
        assert ids(external_id=[ext]) == [u.id]
        assert ids(query="hopper") == [u.id]
        assert ids(query=email2.split("@")[0]) == [other.id]
        assert ids(user_id=both, order_by="first_name") == [other.id, u.id]
        count = c.users.count(request={"email_address": [email, email2]})
        assert (count.object.value, count.total_count) == ("total_count", 2)
        assert c.users.count(request={"query": "turing"}).total_count == 1

        # PATCH /users/{id}/metadata: deep merge, null deletes a key at any level.
        m = c.users.update_metadata(
            user_id=u.id,
            public_metadata={"plan": "pro", "limits": {"projects": None, "seats": 10}},
            private_metadata={"crm": "cus_456"},
        )
        assert m.public_metadata == {"plan": "pro", "limits": {"seats": 10}}
        assert m.private_metadata == {"crm": "cus_456"}
        m = c.users.update_metadata(user_id=u.id, public_metadata={"plan": None})
        assert m.public_metadata == {"limits": {"seats": 10}}
        assert m.private_metadata == {"crm": "cus_456"}, "untouched when not sent"
        assert c.users.get(user_id=u.id).public_metadata == {"limits": {"seats": 10}}
        # PUT replaces what is sent.
        m = c.users.replace_metadata(user_id=u.id, public_metadata={"only": True})
        assert m.public_metadata == {"only": True} and m.private_metadata == {"crm": "cus_456"}

        assert c.users.verify_password(user_id=u.id, password=PASSWORD).verified is True
        with pytest.raises(models.SDKError) as wrong:
            c.users.verify_password(user_id=u.id, password="not the password at all")
        assert wrong.value.status_code == 422
        assert json.loads(wrong.value.body)["errors"][0]["code"] == "incorrect_password"

        banned = c.users.ban(user_id=u.id)
        assert banned.banned is True and c.users.get(user_id=u.id).banned is True
        r = server.post("/api/token/", {"email": email, "password": PASSWORD})
        assert r.status == 401, f"a banned user cannot sign in: {r}"

        deleted = c.users.delete(user_id=u.id)
        assert (deleted.object, deleted.id, deleted.deleted) == ("user", u.id, True)
        with pytest.raises(models.ClerkErrors) as gone:
            c.users.get(user_id=u.id)
        assert gone.value.status_code == 404
        assert gone.value.data.errors[0].code == "resource_not_found"
        assert c.users.count(request={"email_address": [email]}).total_count == 0

        # The Backend API's JWKS holds the session tokens' key (RS256, as Clerk's SDKs need),
        # not the token face's keys.
        jwks = c.jwks.get_jwks()
        assert [k.kty for k in jwks.keys] == ["RSA"]
        assert not {k.kid for k in jwks.keys} & {k["kid"] for k in server.jwks()["keys"]}

    with clerk(server, key="sk_test_not_the_right_key_at_all") as bad:
        with pytest.raises(models.ClerkErrors) as denied:
            bad.users.list(request={})
        assert denied.value.status_code == 401
        assert denied.value.data.errors[0].code == "authentication_invalid"


# --------------------------------------------------------------------------- Django receiver

_DJANGO: dict = {}


def _django_receiver_app() -> dict:
    """The receiver as a Django project would write it from Clerk's webhook guide: verify the
    raw body with svix and `CLERK_WEBHOOK_SIGNING_SECRET`, then sync a local user table keyed by
    the Clerk user id; svix ids already processed are acknowledged and skipped. Defined once,
    after Django is set up (models need the app registry)."""
    if _DJANGO:
        return _DJANGO
    from django.conf import settings
    from django.db import models as dj, transaction
    from django.http import HttpResponseBadRequest, JsonResponse
    from django.views.decorators.csrf import csrf_exempt
    from django.views.decorators.http import require_GET, require_POST

    class ClerkUser(dj.Model):
        clerk_id = dj.CharField(max_length=64, unique=True)
        email = dj.CharField(max_length=320, null=True)
        first_name = dj.CharField(max_length=200, null=True)
        last_name = dj.CharField(max_length=200, null=True)
        public_metadata = dj.JSONField(default=dict)

        class Meta:
            app_label = "clerk_sync"

    class ProcessedWebhook(dj.Model):
        svix_id = dj.CharField(max_length=64, primary_key=True)
        type = dj.CharField(max_length=64)

        class Meta:
            app_label = "clerk_sync"

    @csrf_exempt
    @require_POST
    def clerk_webhook(request):
        headers = {
            "svix-id": request.headers.get("svix-id", ""),
            "svix-timestamp": request.headers.get("svix-timestamp", ""),
            "svix-signature": request.headers.get("svix-signature", ""),
        }
        try:
            Webhook(settings.CLERK_WEBHOOK_SIGNING_SECRET).verify(request.body, headers)
        except WebhookVerificationError as e:
            return HttpResponseBadRequest(f"Error: could not verify webhook: {e}")
        evt = json.loads(request.body)
        data = evt["data"]
        with transaction.atomic():
            _, fresh = ProcessedWebhook.objects.get_or_create(svix_id=headers["svix-id"], defaults={"type": evt["type"]})
            if not fresh:
                return JsonResponse({"success": True, "duplicate": True})
            if evt["type"] in ("user.created", "user.updated"):
                primary = next(
                    (e["email_address"] for e in data["email_addresses"] if e["id"] == data["primary_email_address_id"]),
                    None,
                )
                ClerkUser.objects.update_or_create(
                    clerk_id=data["id"],
                    defaults={
                        "email": primary,
                        "first_name": data["first_name"],
                        "last_name": data["last_name"],
                        "public_metadata": data["public_metadata"],
                    },
                )
            elif evt["type"] == "user.deleted":
                ClerkUser.objects.filter(clerk_id=data["id"]).delete()
        return JsonResponse({"success": True, "message": "Webhook received"})

    @require_GET
    def clerk_users(request):
        users = {
            u.clerk_id: {
                "email": u.email,
                "first_name": u.first_name,
                "last_name": u.last_name,
                "public_metadata": u.public_metadata,
            }
            for u in ClerkUser.objects.all()
        }
        processed = list(ProcessedWebhook.objects.values_list("type", flat=True))
        return JsonResponse({"users": users, "processed": processed})

    _DJANGO.update(models=[ClerkUser, ProcessedWebhook], webhook=clerk_webhook, users=clerk_users)
    return _DJANGO


class DjangoReceiver:
    """The Django project served over real HTTP (wsgiref, one thread: the in-memory SQLite
    database belongs to that thread's connection, so all ORM work happens there)."""

    def __init__(self):
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIHandler
        from django.urls import clear_url_caches, path
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        app = _django_receiver_app()
        urlconf = sys.modules[settings.ROOT_URLCONF]
        if not any(getattr(p, "name", None) == "clerk-webhook" for p in urlconf.urlpatterns):
            urlconf.urlpatterns += [
                path("webhooks/clerk/", app["webhook"], name="clerk-webhook"),
                path("webhooks/clerk/users/", app["users"], name="clerk-users"),
            ]
            clear_url_caches()

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        self.httpd = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=Quiet)
        base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url, self.users_url = f"{base}/webhooks/clerk/", f"{base}/webhooks/clerk/users/"
        ready = threading.Event()

        def run():
            from django.db import connection

            with connection.schema_editor() as editor:
                for model in app["models"]:
                    editor.create_model(model)
            ready.set()
            self.httpd.serve_forever(poll_interval=0.1)

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)

    def state(self) -> dict:
        r = http("GET", self.users_url)
        assert r.status == 200, r
        return r.json

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _api_users(c: Clerk) -> dict:
    out = {}
    for u in c.users.list(request={"limit": 500}):
        primary = next((e.email_address for e in u.email_addresses if e.id == u.primary_email_address_id), None)
        out[u.id] = {
            "email": primary,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "public_metadata": u.public_metadata,
        }
    return out


def test_django_receiver_mirrors_the_user_list(server, django_api):
    from django.test import override_settings

    dj = DjangoReceiver()
    try:
        ep = add_endpoint(server, dj.url, format="clerk")
        with override_settings(CLERK_WEBHOOK_SIGNING_SECRET=ep["secret"]), clerk(server) as c:
            # Self-service native registrations.
            people = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing"), ("Edsger", "Dijkstra"),
                      ("Barbara", "Liskov"), ("Donald", "Knuth")]  # fmt: skip
            regs = [register(server, unique_email(first.lower()), first, last) for first, last in people]
            (a, ta, ea), (b, tb, eb), (cc, _, ecc), (d, _, _), (e, _, _), (f, _, _) = regs
            # Profile changes through the settings flow (names; and an e-mail change).
            update_profile(server, ta, {"email": ea, "name": {"first": "Augusta", "last": "King"}})
            eb2 = unique_email("grace-new")
            update_profile(server, tb, {"email": eb2, "name": {"first": "Grace", "last": "Murray"}})
            # Admin API JSON patches.
            admin_patch(server, cc, [
                {"op": "replace", "path": "/traits/name/first", "value": "Alan M."},
                {"op": "add", "path": "/metadata_public", "value": {"tier": "gold", "seats": 3}},
            ])  # fmt: skip
            admin_patch(server, d, [{"op": "add", "path": "/metadata_public", "value": {"beta": True, "tier": "silver"}}])
            # Clerk API (SDK): metadata merges, a null delete, a name change, a new user, a ban.
            c.users.update_metadata(user_id=clerk_user_id(d), public_metadata={"tier": None, "flags": {"x": 1}})
            c.users.update_metadata(user_id=clerk_user_id(cc), public_metadata={"seats": 5})
            c.users.update_metadata(user_id=clerk_user_id(e), public_metadata={"plan": "pro"})
            c.users.update(user_id=clerk_user_id(e), last_name="Liskov-Huff")
            g = c.users.create(email_address=[unique_email("sdk")], first_name="Katherine", last_name="Johnson",
                               public_metadata={"source": "sdk"})  # fmt: skip
            c.users.ban(user_id=clerk_user_id(f))
            # Deletions, through both APIs.
            assert http("DELETE", f"{server.admin}/admin/identities/{f}").status == 204
            c.users.delete(user_id=clerk_user_id(a))

            want = _api_users(c)
            assert len(want) == 5 and g.id in want and clerk_user_id(a) not in want
            assert want[clerk_user_id(b)]["email"] == eb2 and want[clerk_user_id(d)]["public_metadata"] == {
                "beta": True,
                "flags": {"x": 1},
            }
            deadline = time.monotonic() + 15
            while (state := dj.state())["users"] != want and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.6)  # a few more worker rounds: nothing else may arrive
            state = dj.state()
        assert state["users"] == want, f"Django store:\n{state['users']}\nGET /v1/users:\n{want}"
        processed = state["processed"]
        assert processed.count("user.created") == 7 and processed.count("user.deleted") == 2, processed
        assert sum(t == "user.updated" for t in processed) >= 9, processed
        failed = [a for a in attempts(server, ep["id"]) if a["status_code"] != 200]
        assert failed == [], f"the Django view refused deliveries: {failed}"
    finally:
        dj.close()


# --------------------------------------------------------------------------- signing


def test_rotated_secret_signs_with_both_and_svix_accepts_either(server, receiver):
    rx = receiver()
    ep = add_endpoint(server, rx.url, events=["user.created"])
    old = ep["secret"]
    assert http("GET", f"{server.admin}/admin/webhooks/{ep['id']}/secret").json == {"secret": old}
    r = http("POST", f"{server.admin}/admin/webhooks/{ep['id']}/secret/rotate", {"overlap_seconds": 3600})
    assert r.status == 200, r
    new = r.json["secret"]
    assert new.startswith("whsec_") and new != old
    expires = datetime.fromisoformat(r.json["previous_secret_expires_at"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(timezone.utc)) - timedelta(hours=1)) < timedelta(minutes=1)
    assert http("GET", f"{server.admin}/admin/webhooks/{ep['id']}/secret").json == {"secret": new}
    rx.secret = new

    register(server)
    (d,) = rx.wait_count(1)
    assert len(d.signatures) == 2 and all(s.startswith("v1,") for s in d.signatures), d.headers
    for secret in (old, new):
        for hs in header_sets(d.headers).values():
            Webhook(secret).verify(d.body, hs)  # each secret alone is enough
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(d.body, header_sets(d.headers)["svix"])
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(d.body.replace(b'"user.created"', b'"user.deleted"'), header_sets(d.headers)["svix"])
    assert rx.problems == []

    # Without overlap the old secret stops signing at once.
    r = http("POST", f"{server.admin}/admin/webhooks/{ep['id']}/secret/rotate", {"overlap_seconds": 0})
    newest = r.json["secret"]
    rx.secret = newest
    register(server)
    d = rx.wait_count(2)[1]
    hs = header_sets(d.headers)["webhook"]
    Webhook(newest).verify(d.body, hs)
    Webhook(old).verify(d.body, hs)  # `old` still has most of its hour left
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(d.body, hs)
    assert len(d.signatures) == 2 and rx.problems == []


def test_endpoint_admin_and_resend(server, receiver):
    rx = receiver()
    ep = add_endpoint(server, rx.url, events=["user.created"], description="crm sync")
    rx.secret = ep["secret"]
    base = f"{server.admin}/admin/webhooks/{ep['id']}"
    listed = http("GET", f"{server.admin}/admin/webhooks").json
    assert [e["id"] for e in listed] == [ep["id"]] and "secret" not in listed[0]
    r = http("PATCH", base, {"description": "crm", "events": ["user.created", "user.deleted"]})
    assert r.status == 200 and r.json["events"] == ["user.created", "user.deleted"], r

    iid, _, _ = register(server)
    (d,) = rx.wait_count(1)
    r = http("POST", f"{base}/messages/{d.msg_id}/resend")
    assert r.status == 202, r
    rx.wait(lambda rx: len(rx.requests) == 2, 5, "the re-sent message")
    again = rx.requests[1]
    assert again.msg_id == d.msg_id and again.body == d.body, "same id and body: receivers de-duplicate"
    assert len(rx.accepted()) == 1
    assert http("POST", f"{base}/messages/msg_nope/resend").status == 404
    assert [a["status_code"] for a in attempts_when(server, ep["id"], 2)] == [200, 200]

    assert http("DELETE", base).status == 204
    assert http("GET", base).status == 404
    assert http("DELETE", f"{server.admin}/admin/identities/{iid}").status == 204
    time.sleep(0.6)
    assert len(rx.requests) == 2, "a deleted endpoint gets nothing"
    assert rx.problems == []


def test_replay_respects_the_endpoint_event_filter(server, receiver):
    """`POST /admin/webhooks/{id}/replay` re-queues the events since a time for this endpoint;
    an endpoint subscribed to `user.created` only must not be sent other event types."""
    rx = receiver()
    ep = add_endpoint(server, rx.url, events=["user.created"])
    rx.secret = ep["secret"]
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    register(server)  # user.created + session.created
    (first,) = rx.wait_count(1)
    r = http("POST", f"{server.admin}/admin/webhooks/{ep['id']}/replay", {"since": since})
    assert r.status == 200, r
    rx.wait(lambda rx: len(rx.requests) >= 2, 5, "the replayed message")
    time.sleep(0.6)
    types = [d.type for d in rx.requests]
    assert (r.json, types) == ({"queued": 1}, ["user.created", "user.created"]), (
        f"replay answered {r.json} and sent {types}"
    )
    assert rx.requests[1].msg_id == first.msg_id
    assert rx.problems == []


# --------------------------------------------------------------------------- faults


def test_a_500_is_retried_after_5s_and_every_event_arrives_once(server, receiver):
    rx = receiver()
    ep = add_endpoint(server, rx.url, format="clerk")
    rx.secret = ep["secret"]
    rx.answers.append(500)  # the first attempt fails; the retry is due 5 s later (Svix schedule)
    iid, _, _ = register(server)
    admin_patch(server, iid, [{"op": "add", "path": "/metadata_public", "value": {"n": 1}}])
    rx.wait(lambda rx: rx.requests, 5, "the first attempt")
    time.sleep(1)
    assert len(rx.requests) == 1, "later messages wait behind the failing head, in order"
    state = endpoint_state(server, ep["id"])
    assert state["enabled"] is True and state["failing_since"] is not None, state

    got = rx.wait_count(3, timeout=9)
    assert [d.type for d in got] == ["user.created", "session.created", "user.updated"]
    failed, retried = rx.requests[0], rx.requests[1]
    assert (failed.status, retried.status) == (500, 200)
    assert failed.msg_id == retried.msg_id == got[0].msg_id and failed.body == retried.body
    gap = retried.at - failed.at
    assert 4.8 <= gap <= 5.5 + 1.0, f"retry after {gap:.2f}s (5 s + up to 10 % jitter + a worker tick)"
    assert retried.timestamp >= failed.timestamp + 4, "webhook-timestamp is the attempt's own time"
    assert len(rx.requests) == 4 and len({d.msg_id for d in rx.requests}) == 3
    assert rx.problems == []
    log = attempts_when(server, ep["id"], 4)
    assert [a["status_code"] for a in log] == [500, 200, 200, 200], log
    assert log[0]["delivery_id"] == log[1]["delivery_id"] and all(isinstance(a["latency_ms"], int) for a in log)
    state = endpoint_state(server, ep["id"])
    assert state["enabled"] is True and state["failing_since"] is None, state


def test_a_410_disables_the_endpoint_and_nothing_more_is_sent(server, receiver):
    rx = receiver()
    ep = add_endpoint(server, rx.url, format="clerk")
    rx.secret = ep["secret"]
    rx.answers.append(410)
    register(server)
    rx.wait(lambda rx: rx.requests, 5, "the first attempt")
    deadline = time.monotonic() + 5
    while (state := endpoint_state(server, ep["id"]))["enabled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state["enabled"] is False and "410" in (state["disabled_reason"] or ""), state
    iid, _, _ = register(server)
    admin_patch(server, iid, [{"op": "add", "path": "/metadata_public", "value": {"n": 1}}])
    # Past the first retry's due time (5 s + jitter), so a retry would have been sent by now.
    time.sleep(max(0.0, rx.requests[0].at + 6.2 - time.monotonic()))
    assert [(d.status, d.type) for d in rx.requests] == [(410, "user.created")]
    assert [a["status_code"] for a in attempts(server, ep["id"])] == [410]
    assert endpoint_state(server, ep["id"])["enabled"] is False
    assert rx.problems == []


# --------------------------------------------------------------------------- SIGKILL, part 2


@pytest.mark.parametrize("backend", CRASH_BACKENDS)
def test_after_sigkill_every_acknowledged_registration_is_delivered(crashes, backend):
    run = _crash_run(crashes, backend)
    rx, s = run.receiver, run.server
    with clerk(s) as c:
        existing = {identity_id(u.id) for u in c.users.list(request={"limit": 500})}
    assert set(run.acked) <= existing

    def received(rx) -> set[str]:
        return {identity_id(e["data"]["id"]) for e in rx.events() if e["type"] == "user.created"}

    # The killed instance's endpoint lease (30 s) has to run out before the restarted one
    # delivers; then every committed registration's user.created must arrive.
    rx.wait(
        lambda rx: existing <= received(rx),
        max(5.0, run.killed_at + 60 - time.monotonic()),
        f"user.created for all {len(existing)} identities ({len(run.acked)} acknowledged)",
    )
    time.sleep(0.6)
    got = received(rx)
    assert set(run.acked) <= got
    strays = got - existing
    assert not strays, f"user.created for identities that do not exist: {sorted(strays)[:5]}"
    for iid in got:
        r = http("GET", f"{s.admin}/admin/identities/{iid}")
        assert r.status == 200, (iid, r)
    emails = {identity_id(e["data"]["id"]): e["data"]["email_addresses"][0]["email_address"] for e in rx.events()}
    assert all(emails[iid] == email for iid, email in run.acked.items())
    assert rx.problems == [], rx.problems[:3]
    dups = len([d for d in rx.requests if 200 <= d.status < 300]) - len(rx.accepted())
    print(f"{backend}: {len(run.acked)} acknowledged, {len(existing)} committed, {len(got)} delivered, {dups} re-sent")
