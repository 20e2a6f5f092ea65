"""Clerk session tokens verified by Clerk's own Python SDK (`clerk-backend-api`).

A session signed in through the Kratos face gets a session token from the Clerk Backend API
(`sessions.create_token`, as a backend does); `authenticate_request` accepts it with the PEM
(`jwt_key`, networkless) and `verify_token` with the secret key and Portcullis's `/v1/jwks`.
Expired tokens, tokens for other parties and tokens of a revoked session are refused as Clerk
refuses them.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from clerk_backend_api import models
from clerk_backend_api.security import authenticate_request, verify_token
from clerk_backend_api.security.types import (
    AuthenticateRequestOptions,
    TokenVerificationError,
    TokenVerificationErrorReason,
    VerifyTokenOptions,
)

from conftest import http, jwt_parts
from test_webhooks import CLERK_KEY, clerk, clerk_user_id, register


@pytest.fixture
def server(portcullis_server):
    # Clerk's "customize session token": the role the backend sets lands in every token.
    return portcullis_server(
        CLERK_SECRET_KEYS=json.dumps([CLERK_KEY]),
        CLERK_SESSION_CLAIMS=json.dumps({"role": "{{user.public_metadata.role}}", "email": "{{user.primary_email_address}}"}),
    )


def signed_in(server):
    identity, token, _ = register(server)
    me = http("GET", f"{server.public}/sessions/whoami", headers={"X-Session-Token": token})
    assert me.status == 200, me
    return identity, "sess_" + me.json["id"].replace("-", "")


def bearer(jwt: str) -> httpx.Request:
    return httpx.Request("GET", "http://127.0.0.1/api/dashboard", headers={"Authorization": f"Bearer {jwt}"})


def test_session_tokens_verify_in_clerk_backend_api(server):
    identity, sid = signed_in(server)
    pem = http("GET", f"{server.admin}/admin/clerk/jwt-key")
    assert pem.status == 200 and pem.body.startswith(b"-----BEGIN PUBLIC KEY-----"), pem
    pem = pem.body.decode()
    with clerk(server) as c:
        jwt = c.sessions.create_token(session_id=sid).jwt
        keys = c.jwks.get_jwks().keys
    header, claims = jwt_parts(jwt)
    assert (header["alg"], header["typ"]) == ("RS256", "JWT")
    assert header["kid"] in {k.kid for k in keys}
    assert (claims["sub"], claims["sid"], claims["v"]) == (clerk_user_id(identity), sid, 2)
    assert claims["exp"] - claims["iat"] == 60 and "aud" not in claims

    # Networkless, with the PEM Clerk's dashboard would show.
    state = authenticate_request(bearer(jwt), AuthenticateRequestOptions(jwt_key=pem))
    assert state.is_signed_in, state.reason
    assert state.payload["sub"] == clerk_user_id(identity)
    # With the secret key, the keys fetched from Portcullis's Backend API.
    payload = verify_token(jwt, VerifyTokenOptions(secret_key=CLERK_KEY, api_url=server.admin))
    assert payload["sid"] == sid

    # A token only for other parties: refused when the backend names its own.
    state = authenticate_request(
        bearer(jwt), AuthenticateRequestOptions(jwt_key=pem, authorized_parties=["http://127.0.0.1:4455"])
    )
    assert not state.is_signed_in
    assert state.reason == TokenVerificationErrorReason.TOKEN_INVALID_AUTHORIZED_PARTIES

    # Expired: a one-second token, checked without clock skew.
    with clerk(server) as c:
        short = c.sessions.create_token(session_id=sid, expires_in_seconds=1).jwt
    time.sleep(2.1)
    with pytest.raises(TokenVerificationError) as expired:
        verify_token(short, VerifyTokenOptions(jwt_key=pem, clock_skew_in_ms=0))
    assert expired.value.reason == TokenVerificationErrorReason.TOKEN_EXPIRED

    # A forged signature never passes.
    forged = jwt[:-4] + ("AAAA" if not jwt.endswith("AAAA") else "BBBB")
    assert not authenticate_request(bearer(forged), AuthenticateRequestOptions(jwt_key=pem)).is_signed_in

    # The role set through the Backend API is in the next token.
    assert claims["role"] is None and claims["email"].endswith("@example.com")
    with clerk(server) as c:
        c.users.update_metadata(user_id=clerk_user_id(identity), public_metadata={"role": "admin"})
        jwt = c.sessions.create_token(session_id=sid).jwt
    state = authenticate_request(bearer(jwt), AuthenticateRequestOptions(jwt_key=pem))
    assert state.is_signed_in and state.payload["role"] == "admin"

    # A revoked session gets no new token.
    with clerk(server) as c:
        c.sessions.revoke(session_id=sid)
        with pytest.raises(models.ClerkErrors) as gone:
            c.sessions.create_token(session_id=sid)
    assert gone.value.status_code == 404
    assert gone.value.data.errors[0].code == "resource_not_found"


def test_every_instance_on_one_database_signs_with_the_same_key(portcullis_server, tmp_path):
    # A second server on the same database publishes and uses the key the first one made.
    dsn = f"sqlite://{tmp_path / 'shared.sqlite'}"
    server = portcullis_server(dsn=dsn, CLERK_SECRET_KEYS=json.dumps([CLERK_KEY]))
    other = portcullis_server(dsn=dsn, CLERK_SECRET_KEYS=json.dumps([CLERK_KEY]))
    first = http("GET", f"{server.admin}/admin/clerk/jwt-key").body
    assert http("GET", f"{other.admin}/admin/clerk/jwt-key").body == first
    _, sid = signed_in(server)
    with clerk(other) as c:
        jwt = c.sessions.create_token(session_id=sid).jwt
    assert authenticate_request(bearer(jwt), AuthenticateRequestOptions(jwt_key=first.decode())).is_signed_in
