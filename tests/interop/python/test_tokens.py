"""Portcullis' simplejwt-compatible token face checked with the real Python clients.

PyJWT (`PyJWKClient` + `jwt.decode`) and a Django REST framework app using
djangorestframework-simplejwt's `JWTStatelessUserAuthentication` verify the tokens the real
`portcullis` binary issues; forged, tampered, expired and confused tokens are refused both by
those clients and by our own `/api/token/verify/`. See conftest.py for the servers and the app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import (
    AUDIENCE,
    HS256_SECRET,
    PASSWORD,
    Server,
    b64url,
    http,
    jwt_parts,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
# The messages simplejwt itself uses for a refused token (notes C.1).
SIMPLEJWT_MESSAGES = {
    "Token is invalid",
    "Token is expired",
    "Token has wrong type",
    "Token has no type",
    "Token has no id",
    "Token is blacklisted",
    "Token has no 'exp' claim",
    "Token 'exp' claim has expired",
}


def pyjwt_decode(server: Server, token: str, alg: str, audience=AUDIENCE, client=None) -> dict:
    """How a PyJWT consumer verifies our token: key from the JWKS by `kid`, one algorithm."""
    client = client or jwt.PyJWKClient(server.jwks_url)
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=server.issuer)


def assert_token_not_valid(r, detail: str | None = None):
    assert r.status == 401, r
    body = r.json
    assert body["code"] == "token_not_valid", body
    assert body["detail"] in SIMPLEJWT_MESSAGES, body
    if detail is not None:
        assert body["detail"] == detail, body
    assert r.headers.get("WWW-Authenticate") == 'Bearer realm="api"'


def enc(obj: dict) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def hmac_token(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{enc(header)}.{enc(claims)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def forge_negatives(server: Server, access: str) -> dict[str, str]:
    """Tokens a verifier of `server`'s ES256 access tokens must refuse, built from a real one."""
    h, p, s = access.split(".")
    header, claims = jwt_parts(access)
    kid = header["kid"]
    jwk = next(k for k in server.jwks()["keys"] if k["kid"] == kid)
    public_pem = jwt.PyJWK(jwk).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    attacker = ec.generate_private_key(ec.SECP256R1())
    other_user = str(uuid.uuid4())
    mid = len(p) // 2
    flipped = p[:mid] + ("A" if p[mid] != "A" else "B") + p[mid + 1 :]
    return {
        # Claims rewritten to another user, original signature kept.
        "tampered-claims": f"{h}.{enc(dict(claims, user_id=other_user, sub=other_user))}.{s}",
        "tampered-char": f"{h}.{flipped}.{s}",
        "tampered-signature": f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}",
        "alg-none": f"{enc({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{p}.",
        "alg-none-signed": f"{enc({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{p}.{s}",
        # Algorithm confusion: HMAC keyed with our public key (PEM, or the JWK as published).
        "hs256-public-pem": hmac_token({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, public_pem),
        "hs256-public-jwk": hmac_token(
            {"alg": "HS256", "typ": "JWT", "kid": kid}, claims, json.dumps(jwk).encode()
        ),
        "unknown-kid": jwt.encode(claims, attacker, "ES256", headers={"kid": "es256-0000000000000000"}),
        "foreign-key-known-kid": jwt.encode(claims, attacker, "ES256", headers={"kid": kid}),
        "no-kid": jwt.encode(claims, attacker, "ES256"),
        "truncated": access[:-12],
        "two-segments": f"{h}.{p}",
        "garbage": "garbage",
        "garbage-three-parts": "eyJhbGciOi.eyJzdWIi.c2ln",
    }


NEGATIVE_NAMES = [
    "tampered-claims",
    "tampered-char",
    "tampered-signature",
    "alg-none",
    "alg-none-signed",
    "hs256-public-pem",
    "hs256-public-jwk",
    "unknown-kid",
    "foreign-key-known-kid",
    "no-kid",
    "truncated",
    "two-segments",
    "garbage",
    "garbage-three-parts",
]


@pytest.fixture(scope="module")
def es256_login(es256):
    uid, email = es256.create_user()
    return uid, email, es256.obtain(email)


@pytest.fixture(scope="module")
def negatives(es256, es256_login):
    _, _, pair = es256_login
    forged = forge_negatives(es256, pair["access"])
    assert sorted(forged) == sorted(NEGATIVE_NAMES)
    return forged


# =========================================================================== PyJWT


@pytest.fixture(scope="module", params=["ES256", "EdDSA", "RS256"])
def alg_case(request, es256, portcullis_server):
    """(server, alg, configured audience, expected `aud` claim) — one audience shape per alg."""
    alg = request.param
    if alg == "ES256":  # one audience: `aud` is a string
        return es256, alg, AUDIENCE, AUDIENCE
    if alg == "EdDSA":  # no audience configured: no `aud` claim
        return portcullis_server(TOKENS_ALGORITHM="EdDSA"), alg, None, None
    both = [AUDIENCE, "other-api"]  # two audiences: `aud` is the list
    return portcullis_server(TOKENS_ALGORITHM="RS256", TOKENS_AUDIENCE=json.dumps(both)), alg, AUDIENCE, both


def test_pyjwt_verifies_access_token_via_jwks(alg_case):
    server, alg, audience, expected_aud = alg_case
    uid, email = server.create_user()
    before = int(time.time())
    pair = server.obtain(email)
    after = int(time.time())
    access = pair["access"]

    header, _ = jwt_parts(access)
    assert header["alg"] == alg
    # RFC 9068's type for access tokens; refresh tokens say so too (security review F17).
    assert header["typ"] == "at+jwt"
    assert jwt_parts(pair["refresh"])[0]["typ"] == "refresh+jwt"
    jwks = server.jwks()["keys"]
    published = {k["kid"]: k for k in jwks}
    assert header["kid"] in published
    key = published[header["kid"]]
    assert key["alg"] == alg and key["use"] == "sig"
    for k in jwks:
        assert not PRIVATE_JWK_MEMBERS & set(k), f"private material published: {k}"

    claims = pyjwt_decode(server, access, alg, audience=audience)
    assert claims["token_type"] == "access"
    assert HEX32.match(claims["jti"]), claims
    assert claims["user_id"] == uid and claims["sub"] == uid
    assert claims["iss"] == server.public  # default issuer: public base URL, no trailing slash
    assert UUID_RE.match(claims["sid"])
    assert before - 1 <= claims["iat"] <= after + 1
    assert claims["exp"] - claims["iat"] == 300  # default access lifetime
    if expected_aud is None:
        assert "aud" not in claims
    else:
        assert claims["aud"] == expected_aud

    # The refresh token is signed by the same key and differs only where simplejwt's does.
    refresh = pyjwt_decode(server, pair["refresh"], alg, audience=audience)
    assert refresh["token_type"] == "refresh"
    assert HEX32.match(refresh["jti"]) and refresh["jti"] != claims["jti"]
    assert refresh["exp"] - refresh["iat"] == 24 * 3600
    assert {k: refresh[k] for k in ("user_id", "sub", "sid", "iss")} == {
        k: claims[k] for k in ("user_id", "sub", "sid", "iss")
    }

    # The session behind the token is the one whoami reports for it.
    r = server.whoami(access)
    assert r.status == 200, r
    assert r.json["id"] == claims["sid"] and r.json["identity"]["id"] == uid


def test_pyjwt_refuses_wrong_audience_and_issuer(es256, es256_login):
    _, _, pair = es256_login
    key = jwt.PyJWKClient(es256.jwks_url).get_signing_key_from_jwt(pair["access"]).key
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(pair["access"], key, algorithms=["ES256"], audience="another-api", issuer=es256.issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(pair["access"], key, algorithms=["ES256"], audience=AUDIENCE, issuer="https://evil.example")
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(pair["access"], key, algorithms=["RS256"], audience=AUDIENCE, issuer=es256.issuer)


# =========================================================================== Django + simplejwt


def test_django_accepts_our_access_token(django_api, es256, es256_login):
    uid, _, pair = es256_login
    with django_api.use(es256):
        r = django_api.get_me(pair["access"])
        assert r.status == 200, r
        assert r.json == {"user_id": uid, "token_type": "access"}
        # A second user's token maps to that user (no stale caching of the identity).
        uid2, pair2 = es256.login()
        r = django_api.get_me(pair2["access"])
        assert r.status == 200 and r.json["user_id"] == uid2 != uid


def test_django_without_credentials_is_401(django_api, es256):
    with django_api.use(es256):
        r = django_api.get_me(None)
    assert r.status == 401, r
    assert r.json == {"detail": "Authentication credentials were not provided."}


@pytest.mark.parametrize("name", NEGATIVE_NAMES)
def test_django_rejects_forged_token(django_api, es256, negatives, name):
    with django_api.use(es256):
        r = django_api.get_me(negatives[name])
    assert r.status == 401, r
    assert r.json["code"] == "token_not_valid", r


def test_django_rejects_refresh_token(django_api, es256, es256_login):
    _, _, pair = es256_login
    with django_api.use(es256):
        r = django_api.get_me(pair["refresh"])
    assert r.status == 401, r
    assert r.json["code"] == "token_not_valid"
    assert r.json["messages"][0]["message"] == "Token has wrong type", r.json


def test_django_rejects_wrong_audience_setting(django_api, es256, es256_login):
    """The same valid token is refused by an app that expects another audience."""
    _, _, pair = es256_login
    with django_api.use(es256, audience="another-api"):
        r = django_api.get_me(pair["access"])
    assert r.status == 401, r


def test_expired_access_token_is_refused_everywhere(django_api, short_lived):
    uid, email = short_lived.create_user()
    # Obtain just after a second boundary: `iat`/`exp` are whole seconds, so the token then has
    # close to its full 2 s for the "still valid" control below, even on a busy machine.
    time.sleep(1.02 - time.time() % 1)
    pair = short_lived.obtain(email)
    access = pair["access"]
    _, claims = jwt_parts(access)
    assert claims["exp"] - claims["iat"] == 2
    with django_api.use(short_lived):
        # Valid right now: the refusals below are about time, not configuration.
        assert django_api.get_me(access).status == 200
        assert short_lived.verify(access).status == 200
        time.sleep(max(0.0, claims["exp"] - time.time()) + 1.2)
        r = django_api.get_me(access)
    assert r.status == 401, r
    assert r.json["code"] == "token_not_valid"
    assert r.json["messages"][0]["message"] == "Token is expired", r.json
    assert_token_not_valid(short_lived.verify(access), "Token is expired")
    assert short_lived.whoami(access).status == 401
    # The refresh token outlives it and yields a fresh access token.
    r = short_lived.post("/api/token/refresh/", {"refresh": pair["refresh"]})
    assert r.status == 200, r
    assert short_lived.verify(r.json["access"]).status == 200


# =========================================================================== our verify endpoint


@pytest.mark.parametrize("name", NEGATIVE_NAMES)
def test_verify_endpoint_rejects_forged_token(es256, negatives, name):
    assert_token_not_valid(es256.verify(negatives[name]))


def test_verify_endpoint_accepts_real_tokens_and_needs_the_field(es256, es256_login):
    _, _, pair = es256_login
    for token in (pair["access"], pair["refresh"]):  # simplejwt's verify ignores the type
        r = es256.verify(token)
        assert r.status == 200 and r.json == {}, r
    r = es256.post("/api/token/verify/", {})
    assert r.status == 400 and r.json == {"token": ["This field is required."]}, r


def test_tokens_of_the_wrong_type_are_refused(es256, es256_login):
    _, _, pair = es256_login
    # A refresh token is no bearer credential...
    r = es256.whoami(pair["refresh"])
    assert r.status == 401 and r.json["error"]["id"] == "session_inactive", r
    # ...and an access token cannot refresh.
    assert_token_not_valid(es256.post("/api/token/refresh/", {"refresh": pair["access"]}), "Token has wrong type")
    assert_token_not_valid(es256.post("/api/token/blacklist/", {"refresh": pair["access"]}), "Token has wrong type")


@pytest.mark.parametrize("name", NEGATIVE_NAMES)
def test_whoami_rejects_forged_bearer_token(es256, negatives, name):
    r = es256.whoami(negatives[name])
    assert r.status == 401, r


# --------------------------------------------------------------------------- HS256: claim checks


@pytest.fixture(scope="module")
def hs256_ctx(hs256):
    uid, pair = hs256.login()
    header, claims = jwt_parts(pair["access"])
    return uid, pair, header, claims


def hs_sign(claims: dict, kid: str | None, alg: str = "HS256", secret: str = HS256_SECRET) -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def test_hs256_tokens_verify_with_the_shared_secret(hs256, hs256_ctx, django_api):
    uid, pair, header, claims = hs256_ctx
    assert header["alg"] == "HS256" and header["kid"].startswith("hs256-")
    decoded = jwt.decode(pair["access"], HS256_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=hs256.issuer)
    assert decoded["user_id"] == uid and decoded["token_type"] == "access"
    # simplejwt's classic setup: ALGORITHM HS256 with SIGNING_KEY = the shared secret.
    with django_api.use(hs256, algorithm="HS256", signing_key=HS256_SECRET):
        r = django_api.get_me(pair["access"])
        r_bad = django_api.get_me(hs_sign(dict(claims, user_id="x"), header["kid"], secret="x" * 40))
    assert r.status == 200 and r.json["user_id"] == uid, r
    assert r_bad.status == 401, r_bad


def test_hs256_correctly_signed_token_is_accepted(hs256, hs256_ctx):
    """The control for the negatives below: a token we sign with the shared secret passes."""
    uid, _, header, claims = hs256_ctx
    now = int(time.time())
    token = hs_sign(dict(claims, iat=now, exp=now + 60, jti=uuid.uuid4().hex), header["kid"])
    r = hs256.verify(token)
    assert r.status == 200 and r.json == {}, r
    r = hs256.whoami(token)
    assert r.status == 200 and r.json["identity"]["id"] == uid, r


def _hs_cases(claims: dict, kid: str) -> dict[str, str]:
    now = int(time.time())
    fresh = dict(claims, iat=now, exp=now + 60, jti=uuid.uuid4().hex)
    without = lambda k: {c: v for c, v in fresh.items() if c != k}  # noqa: E731
    return {
        "nbf-in-future": hs_sign(dict(fresh, nbf=now + 3600), kid),
        "iat-in-future": hs_sign(dict(fresh, iat=now + 3600), kid),
        "wrong-iss": hs_sign(dict(fresh, iss="https://evil.example"), kid),
        "no-iss": hs_sign(without("iss"), kid),
        "wrong-aud": hs_sign(dict(fresh, aud="another-api"), kid),
        "wrong-aud-list": hs_sign(dict(fresh, aud=["another-api", "third-api"]), kid),
        "no-aud": hs_sign(without("aud"), kid),
        "exp-in-past": hs_sign(dict(fresh, iat=now - 120, exp=now - 60), kid),
        "no-exp": hs_sign(without("exp"), kid),
        "no-kid": hs_sign(fresh, None),
        "unknown-kid": hs_sign(fresh, "hs256-0000000000000000"),
        "wrong-secret": hs_sign(fresh, kid, secret="another-secret-that-is-long-enough-123"),
        "hs512-same-secret": hs_sign(fresh, kid, alg="HS512"),
    }


HS_CASES = [
    "nbf-in-future",
    "iat-in-future",
    "wrong-iss",
    "no-iss",
    "wrong-aud",
    "wrong-aud-list",
    "no-aud",
    "exp-in-past",
    "no-exp",
    "no-kid",
    "unknown-kid",
    "wrong-secret",
    "hs512-same-secret",
]


@pytest.mark.parametrize("name", HS_CASES)
def test_hs256_bad_claims_are_refused(hs256, hs256_ctx, name):
    _, _, header, claims = hs256_ctx
    cases = _hs_cases(claims, header["kid"])
    assert sorted(cases) == sorted(HS_CASES)
    token = cases[name]
    expected = {"exp-in-past": "Token is expired", "no-exp": "Token has no 'exp' claim"}.get(name)
    assert_token_not_valid(hs256.verify(token), expected)
    assert hs256.whoami(token).status == 401


def test_hs256_signed_refresh_or_untyped_token_is_no_access_token(hs256, hs256_ctx):
    _, _, header, claims = hs256_ctx
    now = int(time.time())
    fresh = dict(claims, iat=now, exp=now + 60, jti=uuid.uuid4().hex)
    as_refresh = hs_sign(dict(fresh, token_type="refresh"), header["kid"])
    untyped = hs_sign({k: v for k, v in fresh.items() if k != "token_type"}, header["kid"])
    for token in (as_refresh, untyped):
        r = hs256.whoami(token)
        assert r.status == 401 and r.json["error"]["id"] == "session_inactive", r
    # A correctly signed refresh token that Portcullis never issued cannot mint tokens.
    assert_token_not_valid(hs256.post("/api/token/refresh/", {"refresh": as_refresh}), "Token is invalid")
    assert_token_not_valid(hs256.verify(as_refresh), "Token is invalid")


def test_extreme_exp_gets_an_answer_not_a_crash(portcullis_server):
    # Default leeway (10 s): the overflow needs a non-zero leeway.
    server = portcullis_server(TOKENS_ALGORITHM="HS256", TOKENS_HS256_SECRET=HS256_SECRET)
    _, pair = server.login()
    header, claims = jwt_parts(pair["access"])
    token = hs_sign(dict(claims, exp=2**63 - 1), header["kid"])
    r = server.verify(token)
    assert r.status in (200, 401), r  # far-future expiry: accepted, or refused cleanly
    assert server.whoami(token).status in (200, 401)


def test_hs256_secret_is_never_published(hs256, hs256_ctx):
    _, _, header, _ = hs256_ctx
    keys = hs256.jwks()["keys"]
    assert all(k.get("kty") != "oct" and k.get("alg") != "HS256" for k in keys), keys
    assert header["kid"] not in {k.get("kid") for k in keys}
    assert HS256_SECRET not in json.dumps(keys)


def test_hs256_jwks_has_no_keys(hs256):
    assert hs256.jwks() == {"keys": []}


# =========================================================================== signing-key rotation


@pytest.fixture(scope="module")
def rotated(portcullis_server):
    """A server whose signing key was rotated between token A and token B (same user)."""
    server = portcullis_server(TOKENS_AUDIENCE=json.dumps([AUDIENCE]))
    uid, email = server.create_user()
    a = server.obtain(email)
    # A consumer that fetched the JWKS before the rotation (PyJWT's default client).
    early_client = jwt.PyJWKClient(server.jwks_url)
    assert pyjwt_decode(server, a["access"], "ES256", client=early_client)["user_id"] == uid
    early_zero_cooldown = jwt.PyJWKClient(server.jwks_url, cooldown_duration=0)
    assert pyjwt_decode(server, a["access"], "ES256", client=early_zero_cooldown)["user_id"] == uid
    new_kid = server.rotate_key()
    b = server.obtain(email)
    return {
        "server": server,
        "uid": uid,
        "a": a,
        "b": b,
        "new_kid": new_kid,
        "early_client": early_client,
        "early_zero_cooldown": early_zero_cooldown,
    }


def test_key_rotation_keeps_old_tokens_valid(rotated, django_api):
    server, uid, a, b = rotated["server"], rotated["uid"], rotated["a"], rotated["b"]
    kid_a = jwt_parts(a["access"])[0]["kid"]
    kid_b = jwt_parts(b["access"])[0]["kid"]
    assert kid_b == rotated["new_kid"] != kid_a
    assert {kid_a, kid_b} <= {k["kid"] for k in server.jwks()["keys"]}

    # One client verifies both: the JWKS lists the retired key next to the new one.
    client = jwt.PyJWKClient(server.jwks_url)
    for pair in (a, b):
        assert pyjwt_decode(server, pair["access"], "ES256", client=client)["user_id"] == uid
    # A client that cached the set before the rotation refetches on B's unknown kid (when its
    # refetch cooldown allows) and then verifies both as well.
    early = rotated["early_zero_cooldown"]
    for pair in (b, a):
        assert pyjwt_decode(server, pair["access"], "ES256", client=early)["user_id"] == uid

    keys = {k["kid"]: k for k in http("GET", f"{server.admin}/admin/keys").json}
    assert keys[kid_b]["state"] == "current"
    assert keys[kid_a]["state"] != "current" and keys[kid_a]["drop_after"], keys[kid_a]

    with django_api.use(server):
        for pair in (a, b):
            r = django_api.get_me(pair["access"])
            assert r.status == 200 and r.json["user_id"] == uid, r
    for pair in (a, b):
        assert server.verify(pair["access"]).status == 200
    # A refresh token signed by the retired key still refreshes; the result uses the new key.
    r = server.post("/api/token/refresh/", {"refresh": a["refresh"]})
    assert r.status == 200, r
    assert jwt_parts(r.json["access"])[0]["kid"] == kid_b
    assert jwt_parts(r.json["refresh"])[0]["kid"] == kid_b


def test_consumer_that_cached_the_jwks_accepts_new_tokens_right_after_rotation(rotated):
    client = rotated["early_client"]  # default settings, fetched just before the rotation
    claims = pyjwt_decode(rotated["server"], rotated["b"]["access"], "ES256", client=client)
    assert claims["user_id"] == rotated["uid"]


# =========================================================================== obtain, refresh, blacklist


def test_obtain_errors_match_simplejwt(es256):
    uid, email = es256.create_user()
    r = es256.post("/api/token/", {"email": email, "password": "wrong password here"})
    assert r.status == 401 and r.json == {"detail": "No active account found with the given credentials"}, r
    r = es256.post("/api/token/", {"email": "nobody-" + email, "password": PASSWORD})
    assert r.status == 401 and r.json == {"detail": "No active account found with the given credentials"}, r
    r = es256.post("/api/token/", {})
    assert r.status == 400 and r.json == {
        "email": ["This field is required."],
        "password": ["This field is required."],
    }, r
    for field in ("username", "identifier"):
        r = es256.post("/api/token/", {field: email, "password": PASSWORD})
        assert r.status == 200 and set(r.json) == {"access", "refresh"}, r
        assert jwt_parts(r.json["access"])[1]["user_id"] == uid


def test_refresh_rotation_and_reuse_detection(es256):
    uid, pair = es256.login()
    r = es256.post("/api/token/refresh/", {"refresh": pair["refresh"]})
    assert r.status == 200 and set(r.json) == {"access", "refresh"}, r
    new = r.json
    assert new["refresh"] != pair["refresh"] and new["access"] != pair["access"]
    new_claims = jwt_parts(new["refresh"])[1]
    assert new_claims["sid"] == jwt_parts(pair["refresh"])[1]["sid"]
    assert new_claims["jti"] != jwt_parts(pair["refresh"])[1]["jti"]
    assert es256.whoami(new["access"]).status == 200

    # Reusing the rotated token is theft: refused, and the whole family with it.
    assert_token_not_valid(es256.post("/api/token/refresh/", {"refresh": pair["refresh"]}))
    assert_token_not_valid(es256.post("/api/token/refresh/", {"refresh": new["refresh"]}))
    assert_token_not_valid(es256.verify(new["refresh"]))
    # ...and the session behind it ends, so its access tokens stop working at whoami.
    assert es256.whoami(new["access"]).status == 401

    r = es256.post("/api/token/refresh/", {})
    assert r.status == 400 and r.json == {"refresh": ["This field is required."]}, r


def test_blacklist_refuses_the_token_afterwards(es256):
    _, pair = es256.login()
    r = es256.post("/api/token/blacklist/", {"refresh": pair["refresh"]})
    assert r.status == 200 and r.json == {}, r
    assert_token_not_valid(es256.post("/api/token/refresh/", {"refresh": pair["refresh"]}))
    assert_token_not_valid(es256.verify(pair["refresh"]))
    assert_token_not_valid(es256.post("/api/token/blacklist/", {"refresh": pair["refresh"]}))
    r = es256.post("/api/token/blacklist/", {})
    assert r.status == 400 and r.json == {"refresh": ["This field is required."]}, r


def test_without_rotation_refresh_returns_only_access(portcullis_server):
    server = portcullis_server(TOKENS_ROTATE_REFRESH_TOKENS="false")
    _, pair = server.login()
    for _ in range(2):  # the same refresh token keeps working
        r = server.post("/api/token/refresh/", {"refresh": pair["refresh"]})
        assert r.status == 200 and set(r.json) == {"access"}, r
        assert jwt_parts(r.json["access"])[1]["token_type"] == "access"


def test_logout_path_exists_only_in_cookie_mode(es256):
    assert es256.post("/api/token/logout/", {}).status == 404


def _cookie_map(set_cookies: list[str]) -> dict[str, tuple[str, set[str]]]:
    """name -> (value, attributes as lower-case strings)."""
    out = {}
    for c in set_cookies:
        first, *attrs = [p.strip() for p in c.split(";")]
        name, _, value = first.partition("=")
        out[name] = (value, {a.lower() for a in attrs})
    return out


def test_cookie_mode(portcullis_server):
    server = portcullis_server(TOKENS_COOKIES_ENABLED="true")
    uid, email = server.create_user()
    r = server.post("/api/token/", {"email": email, "password": PASSWORD})
    assert r.status == 200, r
    cookies = _cookie_map(r.cookies())
    assert set(cookies) == {"access_token", "refresh_token"}, r.cookies()
    assert cookies["access_token"][0] == r.json["access"]
    assert cookies["refresh_token"][0] == r.json["refresh"]
    for _, attrs in cookies.values():
        assert {"httponly", "path=/", "samesite=lax"} <= attrs, attrs
        assert "secure" not in attrs  # --dev over plain http only
    assert "max-age=300" in cookies["access_token"][1]
    assert "max-age=86400" in cookies["refresh_token"][1]

    # Refresh with nothing but the cookie (no body at all).
    refresh = cookies["refresh_token"][0]
    r = server.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={refresh}"})
    assert r.status == 200, r
    rotated = _cookie_map(r.cookies())
    assert rotated["refresh_token"][0] == r.json["refresh"] != refresh
    assert rotated["access_token"][0] == r.json["access"]
    access = r.json["access"]
    assert server.whoami(access).json["identity"]["id"] == uid

    # Logout with the cookie: both cookies cleared, the refresh token and the session end.
    current = rotated["refresh_token"][0]
    r = server.post("/api/token/logout/", headers={"Cookie": f"access_token={access}; refresh_token={current}"})
    assert r.status == 200 and r.json == {}, r
    cleared = _cookie_map(r.cookies())
    assert set(cleared) == {"access_token", "refresh_token"}
    for value, attrs in cleared.values():
        assert value == "" and "max-age=0" in attrs, cleared
    assert_token_not_valid(server.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={current}"}))
    assert server.whoami(access).status == 401


# =========================================================================== whoami


def test_whoami_with_bearer_access_token(es256):
    uid, pair = es256.login()
    r = es256.whoami(pair["access"])
    assert r.status == 200, r
    assert r.json["identity"]["id"] == uid
    assert r.json["active"] is True
    assert r.json["id"] == jwt_parts(pair["access"])[1]["sid"]
    assert "tokenized" not in r.json


def test_whoami_tokenize_as(es256, django_api):
    uid, email = es256.create_user()
    pair = es256.obtain(email)
    # Minting needs the session token itself: an access token only reads the session.
    assert es256.whoami(pair["access"], "?tokenize_as=api").status == 401
    session_token = es256.session_token(email)
    r = es256.whoami(session_token, "?tokenize_as=api")
    assert r.status == 200, r
    session = r.json
    assert session["identity"]["id"] == uid
    tokenized = session["tokenized"]

    client = jwt.PyJWKClient(es256.jwks_url)
    key = client.get_signing_key_from_jwt(tokenized)
    # It carries the server's configured audience, so audience-checking verifiers accept it.
    claims = jwt.decode(tokenized, key.key, algorithms=["ES256"], issuer=es256.issuer, audience=AUDIENCE)
    assert claims["aud"] == AUDIENCE
    assert claims["email"] == email
    assert claims["sub"] == uid and claims["sid"] == session["id"]
    assert claims["nbf"] == claims["iat"] and claims["exp"] - claims["iat"] == 300
    assert claims["jti"]
    assert jwt_parts(tokenized)[0]["kid"] == jwt_parts(pair["access"])[0]["kid"]

    # A session token is not an access token: neither Django nor whoami takes it as one.
    with django_api.use(es256):
        assert django_api.get_me(tokenized).status == 401
    assert es256.whoami(tokenized).status == 401

    r = es256.whoami(session_token, "?tokenize_as=no-such-template")
    assert r.status == 400, r


# =========================================================================== JWKS caching


def test_jwks_is_cacheable(es256):
    r = es256.get("/.well-known/jwks.json")
    assert r.headers.get("Cache-Control") == "public, max-age=60"
