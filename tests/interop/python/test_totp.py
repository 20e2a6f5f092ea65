"""Second factors (TOTP and backup codes) as Python backends see them, against the real binary.

- pyotp is the authenticator app: it gets the base32 secret from the settings flow's text node
  (the otpauth:// URI itself is only inside the QR picture, and nowhere in the admin API) and
  computes the codes.
- The simplejwt face (`POST /api/token/`) asks an identity with a second factor for an `otp`
  (`second_factor_required` / `second_factor_invalid`), and the Django app of conftest.py
  accepts the access token issued with one; enrolling a second factor revokes older refresh tokens.
- The official clerk-backend-api SDK sees `two_factor_enabled` / `totp_enabled` /
  `backup_code_enabled` and switches every second factor off with `users.disable_mfa`.

The server accepts a TOTP code of the current 30 s step ±1 but never the same step twice for one
credential, so every test hands out strictly increasing steps (`fresh_code`).
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlencode

import pyotp
import pytest
from clerk_backend_api import Clerk
from clerk_backend_api.utils import BackoffStrategy, RetryConfig

from conftest import AUDIENCE, PASSWORD, Server, http

CLERK_KEY = "sk_test_portcullis_totp_0123456789"
NO_RETRIES = RetryConfig("none", BackoffStrategy(1, 1, 1, 1), False)
PERIOD = 30
SETTINGS_SAVED = 1050001


@pytest.fixture(scope="module")
def server(portcullis_server) -> Server:
    """`serve --dev` (TOTP and lookup secrets on), a Clerk key, and the audience Django expects."""
    return portcullis_server(
        CLERK_SECRET_KEYS=json.dumps([CLERK_KEY]),
        TOKENS_AUDIENCE=json.dumps([AUDIENCE]),
    )


def clerk(server: Server) -> Clerk:
    return Clerk(bearer_auth=CLERK_KEY, server_url=f"{server.admin}/v1", retry_config=NO_RETRIES)


# --------------------------------------------------------------------------- TOTP timing


def step_now() -> int:
    return int(time.time()) // PERIOD


def code_at(totp: pyotp.TOTP, step: int) -> str:
    return totp.at(step * PERIOD)


def fresh_code(totp: pyotp.TOTP, last_step: int) -> tuple[int, str]:
    """A code for a step the server has not accepted yet: the later of now and `last_step + 1`.
    Up to now+1 is inside the server's window; a later step is waited for, to its boundary."""
    step = max(last_step + 1, step_now())
    wait = (step - 1) * PERIOD - time.time()
    if wait > 0:
        time.sleep(wait + 0.02)
    return step, code_at(totp, step)


def wrong_code(totp: pyotp.TOTP) -> str:
    """Six digits that are none of the codes near now."""
    near = {code_at(totp, step_now() + d) for d in range(-2, 3)}
    n = 135791
    while f"{n:06d}" in near:
        n = (n + 7919) % 1_000_000
    return f"{n:06d}"


# --------------------------------------------------------------------------- self-service


def auth(token: str) -> dict:
    return {"X-Session-Token": token}


def settings_flow(server: Server, token: str):
    r = server.get("/self-service/settings/api", auth(token))
    assert r.status == 200, r
    return r


def submit_settings(server: Server, token: str, flow: dict, body: dict):
    return server.post(f"/self-service/settings?flow={flow['id']}", body, auth(token))


def node_by_id(flow: dict, node_id: str) -> dict | None:
    return next((n for n in flow["ui"]["nodes"] if n["attributes"].get("id") == node_id), None)


def message_ids(flow: dict) -> list[int]:
    return [m["id"] for m in flow["ui"].get("messages") or []]


def secret_of(flow: dict) -> str:
    node = node_by_id(flow, "totp_secret_key")
    assert node and node["type"] == "text" and node["group"] == "totp", flow["ui"]["nodes"]
    secret = node["attributes"]["text"]["context"]["secret"]
    assert node["attributes"]["text"]["text"] == secret
    return secret


def enrol_totp(server: Server, token: str) -> tuple[str, pyotp.TOTP, int]:
    """Links TOTP from a settings flow, as a user with an authenticator app would:
    (secret, the app, the step of the code used)."""
    flow = settings_flow(server, token).json
    secret = secret_of(flow)
    totp = pyotp.TOTP(secret)  # pyotp's defaults are the server's: SHA1, 6 digits, 30 s
    step = step_now()
    r = submit_settings(server, token, flow, {"method": "totp", "totp_code": code_at(totp, step)})
    assert r.status == 200 and r.json["state"] == "success", r
    assert SETTINGS_SAVED in message_ids(r.json)
    return secret, totp, step


def add_backup_codes(server: Server, token: str) -> list[str]:
    """Regenerates and confirms lookup secrets; returns the 12 codes."""
    flow = settings_flow(server, token).json
    r = submit_settings(server, token, flow, {"method": "lookup_secret", "lookup_secret_regenerate": True})
    assert r.status == 200 and r.json["state"] == "show_form", r
    node = node_by_id(r.json, "lookup_secret_codes")
    codes = [s["context"]["secret"] for s in node["attributes"]["text"]["context"]["secrets"]]
    assert len(codes) == 12, codes
    r = submit_settings(server, token, r.json, {"method": "lookup_secret", "lookup_secret_confirm": True})
    assert r.status == 200 and r.json["state"] == "success", r
    return codes


def password_login(server: Server, email: str) -> dict:
    flow = server.get("/self-service/login/api").json
    r = server.post(
        f"/self-service/login?flow={flow['id']}",
        {"method": "password", "identifier": email, "password": PASSWORD},
    )
    assert r.status == 200, r
    return r.json


def whoami(server: Server, token: str):
    return server.get("/sessions/whoami", auth(token))


def admin_identity(server: Server, iid: str, include=("totp", "lookup_secret")) -> dict:
    """GET /admin/identities/{id} with those credentials' configs declassified."""
    query = urlencode([("include_credential", t) for t in include])
    r = http("GET", f"{server.admin}/admin/identities/{iid}?{query}")
    assert r.status == 200, r
    return r.json


# --------------------------------------------------------------------------- simplejwt face


def obtain(server: Server, email: str, **extra):
    return server.post("/api/token/", {"email": email, "password": PASSWORD, **extra})


def assert_second_factor(r, code: str) -> None:
    assert r.status == 401, r
    assert r.json["code"] == code, r
    assert isinstance(r.json["detail"], str) and r.json["detail"], r


# --------------------------------------------------------------------------- tests


def test_the_settings_secret_works_in_pyotp_and_the_otpauth_uri_stays_private(server):
    uid, email = server.create_user()
    token = server.session_token(email)

    r = settings_flow(server, token)
    # The URI is drawn into the QR code only; apps that cannot scan get the bare secret.
    assert b"otpauth:" not in r.body, "no otpauth:// URI in the settings flow"
    flow = r.json
    secret = secret_of(flow)
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) >= 16, "at least 128 bits"
    qr = node_by_id(flow, "totp_qr")
    assert qr["type"] == "img" and qr["attributes"]["src"].startswith("data:image/png;base64,")
    png = base64.b64decode(qr["attributes"]["src"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # pyotp's code for that secret links the authenticator.
    totp = pyotp.TOTP(secret)
    r = submit_settings(server, token, flow, {"method": "totp", "totp_code": totp.now()})
    assert r.status == 200 and r.json["state"] == "success", r
    me = whoami(server, token)
    assert me.status == 200 and me.json["authenticator_assurance_level"] == "aal2", me
    assert b"otpauth:" not in me.body

    # Not even an admin asking for the credential's config gets the key back: it is sealed at
    # rest (Kratos would show `config.totp_url` in plain text here).
    identity = admin_identity(server, uid, ["totp"])
    assert identity["credentials"]["totp"]["identifiers"] == [uid]
    shown = json.dumps(identity)
    assert "otpauth:" not in shown and secret not in shown, identity["credentials"]["totp"]


def test_simplejwt_obtain_needs_the_second_factor(server, django_api):
    uid, email = server.create_user()
    before = server.obtain(email)  # no second factor yet: a plain token pair
    _, totp, step = enrol_totp(server, server.session_token(email))

    # Adding a second factor revokes the refresh tokens issued on the password alone.
    r = server.post("/api/token/refresh/", {"refresh": before["refresh"]})
    assert r.status == 401 and r.json["code"] == "token_not_valid", r

    assert_second_factor(obtain(server, email), "second_factor_required")
    assert_second_factor(obtain(server, email, otp=wrong_code(totp)), "second_factor_invalid")

    step, code = fresh_code(totp, step)
    r = obtain(server, email, otp=code)
    assert r.status == 200 and set(r.json) == {"access", "refresh"}, r
    pair = r.json
    with django_api.use(server):
        me = django_api.get_me(pair["access"])
        assert me.status == 200 and me.json == {"user_id": uid, "token_type": "access"}, me
    # The session behind the token has both factors, so whoami takes it under highest_available.
    r = server.whoami(pair["access"])
    assert r.status == 200 and r.json["authenticator_assurance_level"] == "aal2", r
    r = server.post("/api/token/refresh/", {"refresh": pair["refresh"]})
    assert r.status == 200, r

    # The same code twice is a replay.
    assert_second_factor(obtain(server, email, otp=code), "second_factor_invalid")


def test_clerk_shows_the_second_factors_and_disable_mfa_removes_them(server):
    uid, email = server.create_user()
    user_id = "user_" + uid.replace("-", "")

    def flags(c: Clerk) -> tuple[bool, bool, bool]:
        u = c.users.get(user_id=user_id)
        return u.two_factor_enabled, u.totp_enabled, u.backup_code_enabled

    with clerk(server) as c:
        assert flags(c) == (False, False, False)
        token = server.session_token(email)
        enrol_totp(server, token)
        assert flags(c) == (True, True, False)
        codes = add_backup_codes(server, token)
        assert flags(c) == (True, True, True)

        # A backup code is an `otp` for the simplejwt face too, once.
        r = obtain(server, email, otp=codes[0])
        assert r.status == 200 and set(r.json) == {"access", "refresh"}, r
        assert_second_factor(obtain(server, email, otp=codes[0]), "second_factor_invalid")

        done = c.users.disable_mfa(user_id=user_id)
        assert done.user_id == user_id
        assert flags(c) == (False, False, False)

    creds = admin_identity(server, uid)["credentials"]
    assert "totp" not in creds and "lookup_secret" not in creds, creds
    # With no second factor left, a password login is complete at aal1.
    data = password_login(server, email)
    assert data["session"]["authenticator_assurance_level"] == "aal1"
    assert data["session"]["identity"]["id"] == uid
    me = whoami(server, data["session_token"])
    assert me.status == 200 and me.json["authenticator_assurance_level"] == "aal1", me
    r = obtain(server, email)
    assert r.status == 200 and set(r.json) == {"access", "refresh"}, r
