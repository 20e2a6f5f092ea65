"""Fixtures for the token interop suite: real `portcullis` servers and an in-process Django app.

Every server is the real binary (`PORTCULLIS_BIN`, default `target/debug/portcullis` under the
repository root) started with `serve --dev` on free 127.0.0.1 ports, a fresh SQLite file and cheap
Argon2 parameters; `portcullis_server(**env)` starts one with extra configuration (keys without the
`PORTCULLIS_` prefix, e.g. `TOKENS_ALGORITHM="RS256"`), and `portcullis_server(dsn=…, **env)` one on
a given database (e.g. to restart on the same data after `Server.kill()`). All servers are stopped
at session end. `postgres` is a throwaway PostgreSQL cluster (one database per `new_database()`).

The Django side is a minimal project configured in-process (`settings.configure`) whose only view
uses djangorestframework-simplejwt's `JWTStatelessUserAuthentication` + `IsAuthenticated`, i.e.
an API backend that trusts tokens issued by Portcullis through `JWK_URL`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "tangerine violin sleepy"
AUDIENCE = "my-api"

# PyJWKClient fetches with urllib, which honours HTTP(S)_PROXY: keep loopback traffic direct.
for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(_hosts + ["127.0.0.1", "localhost"])

# Our own HTTP calls never use a proxy either.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def portcullis_bin() -> Path:
    p = Path(os.environ.get("PORTCULLIS_BIN", "target/debug/portcullis"))
    return p if p.is_absolute() else REPO_ROOT / p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


def http(method: str, url: str, body=None, headers: dict | None = None, timeout=10) -> Response:
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _opener.open(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


# --------------------------------------------------------------------------- JWT helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token: str) -> tuple[dict, dict]:
    """(header, payload) without verification."""
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


# --------------------------------------------------------------------------- servers


class Server:
    def __init__(self, workdir: Path, extra_env: dict[str, str], dsn: str | None = None):
        self.workdir = workdir
        self.extra_env = extra_env
        # None: a fresh SQLite file per start. Otherwise this database, kept across restarts.
        self.dsn = dsn
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "server.log"

    def start(self) -> "Server":
        binary = portcullis_bin()
        if not binary.exists():
            raise RuntimeError(f"portcullis binary not found at {binary} (set PORTCULLIS_BIN)")
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.public_port, self.admin_port = free_port(), free_port()
            dsn = self.dsn or f"sqlite://{self.workdir / f'db-{uuid.uuid4().hex[:8]}.sqlite'}"
            # The server rejects unknown PORTCULLIS_* variables (e.g. PORTCULLIS_BIN,
            # PORTCULLIS_PUBLIC_URL from the caller), so only ours are passed on.
            env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
            env.update(
                PORTCULLIS_DSN=dsn,
                PORTCULLIS_SERVE_PUBLIC_PORT=str(self.public_port),
                PORTCULLIS_SERVE_ADMIN_PORT=str(self.admin_port),
                PORTCULLIS_HASHERS_ARGON2_MEMORY="64KiB",
                PORTCULLIS_HASHERS_ARGON2_ITERATIONS="1",
                # Every client here is 127.0.0.1; the per-IP limits have their own API tests.
                PORTCULLIS_SECURITY_RATE_LIMIT_ENABLED="false",
            )
            env.update({f"PORTCULLIS_{k}": v for k, v in self.extra_env.items()})
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [str(binary), "serve", "--dev"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
            log.close()
            self.public = f"http://127.0.0.1:{self.public_port}"
            self.admin = f"http://127.0.0.1:{self.admin_port}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if http("GET", f"{self.public}/health/ready", timeout=1).status == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
            last_error = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"portcullis did not become ready; log tail:\n{last_error}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, whatever is in flight is cut off."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    # -- conveniences

    @property
    def issuer(self) -> str:
        return self.extra_env.get("TOKENS_ISSUER", self.public)

    @property
    def jwks_url(self) -> str:
        return f"{self.public}/.well-known/jwks.json"

    def post(self, path: str, body=None, headers=None) -> Response:
        return http("POST", self.public + path, body, headers)

    def get(self, path: str, headers=None) -> Response:
        return http("GET", self.public + path, None, headers)

    def create_user(self) -> tuple[str, str]:
        """A new identity with a password; returns (id, email)."""
        email = f"u-{uuid.uuid4().hex[:12]}@example.com"
        r = http(
            "POST",
            f"{self.admin}/admin/identities",
            {
                "schema_id": "default",
                "traits": {"email": email},
                "credentials": {"password": {"config": {"password": PASSWORD}}},
            },
        )
        assert r.status == 201, r
        return r.json["id"], email

    def obtain(self, email: str) -> dict:
        r = self.post("/api/token/", {"email": email, "password": PASSWORD})
        assert r.status == 200, r
        return r.json

    def session_token(self, email: str) -> str:
        """A Kratos session token from the native login flow."""
        flow = self.get("/self-service/login/api").json
        r = self.post(
            f"/self-service/login?flow={flow['id']}",
            {"method": "password", "identifier": email, "password": PASSWORD},
        )
        assert r.status == 200, r
        return r.json["session_token"]

    def login(self) -> tuple[str, dict]:
        """A new user and a token pair for it: (identity id, {"access", "refresh"})."""
        uid, email = self.create_user()
        return uid, self.obtain(email)

    def verify(self, token: str) -> Response:
        return self.post("/api/token/verify/", {"token": token})

    def whoami(self, access: str, query: str = "") -> Response:
        return self.get(f"/sessions/whoami{query}", {"Authorization": f"Bearer {access}"})

    def rotate_key(self) -> str:
        r = http("POST", f"{self.admin}/admin/keys/rotate")
        assert r.status == 200, r
        return r.json["kid"]

    def jwks(self) -> dict:
        r = self.get("/.well-known/jwks.json")
        assert r.status == 200, r
        return r.json


@pytest.fixture(scope="session")
def portcullis_server(tmp_path_factory):
    """Factory: `portcullis_server(TOKENS_ALGORITHM="RS256", ...)` starts a fresh server;
    `dsn=` runs it on that database instead of a fresh SQLite file."""
    servers: list[Server] = []

    def start(dsn: str | None = None, **extra_env: str) -> Server:
        s = Server(tmp_path_factory.mktemp("portcullis"), extra_env, dsn).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
    for s in servers:
        shutil.rmtree(s.workdir, ignore_errors=True)


class Postgres:
    """A throwaway PostgreSQL cluster on a free port (mirrors `start_postgres` in scripts/lib.sh):
    initdb and pg_ctl run as the `postgres` user when we are root, since initdb refuses root."""

    def __init__(self, base: Path):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        if not bins:
            raise FileNotFoundError("no /usr/lib/postgresql/*/bin (apt-get install -y postgresql)")
        self.bin = bins[-1]
        self.dir = base
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(base, "postgres", "postgres")
        self.port = free_port()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        base = self.dir
        self._run("initdb", "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = (
            f"-p {self.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-o", opts, "start")

    def _run(self, tool: str, *args: str) -> None:
        r = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")

    def new_database(self) -> str:
        """A new, empty database; returns its DSN."""
        name = f"portcullis_{uuid.uuid4().hex[:10]}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster for the session (skips where PostgreSQL is not installed); stopped
    and removed at teardown. Tests stop their servers on it themselves: `portcullis_server` is
    usually set up earlier, so it is torn down after this. The directory is outside pytest's
    tmp root, which is private to our user and so out of reach of `postgres`."""
    base = Path(tempfile.mkdtemp(prefix="portcullis-pg-"))
    try:
        pg = Postgres(base)
    except FileNotFoundError as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(str(e))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.dir, ignore_errors=True)


TOKENIZER = json.dumps({"api": {"ttl": "5m", "claims": {"email": "identity.traits.email"}}})


@pytest.fixture(scope="session")
def es256(portcullis_server) -> Server:
    """The default algorithm, audience `my-api`, a whoami tokenizer template `api`, and no
    grace window for rotated refresh tokens (so an immediate replay counts as theft)."""
    return portcullis_server(
        TOKENS_AUDIENCE=json.dumps([AUDIENCE]),
        TOKENS_ROTATION_GRACE="0s",
        SESSION_WHOAMI_TOKENIZER_TEMPLATES=TOKENIZER,
    )


@pytest.fixture(scope="session")
def short_lived(portcullis_server) -> Server:
    """Access tokens live 2 s with no leeway, so a test can watch one expire."""
    return portcullis_server(
        TOKENS_AUDIENCE=json.dumps([AUDIENCE]),
        TOKENS_ACCESS_TOKEN_LIFETIME="2s",
        TOKENS_LEEWAY="0s",
    )


HS256_SECRET = "interop-shared-secret-" + "k" * 48  # 70 bytes: long enough even for HS512


@pytest.fixture(scope="session")
def hs256(portcullis_server) -> Server:
    """HS256 with a secret the tests know, so they can sign their own tokens."""
    return portcullis_server(
        TOKENS_ALGORITHM="HS256",
        TOKENS_HS256_SECRET=HS256_SECRET,
        TOKENS_AUDIENCE=json.dumps([AUDIENCE]),
        TOKENS_LEEWAY="0s",
    )


# --------------------------------------------------------------------------- Django


def _configure_django() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="interop-django-secret-not-used-for-tokens",
        # testserver: the test client; 127.0.0.1: the webhook receiver served over real HTTP.
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        ROOT_URLCONF=__name__ + "_urls",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        MIDDLEWARE=[],
        USE_TZ=True,
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework_simplejwt.authentication.JWTStatelessUserAuthentication"
            ],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "UNAUTHENTICATED_USER": None,
        },
        # Replaced per Portcullis server by DjangoApi.use(); see there.
        SIMPLE_JWT={"ALGORITHM": "ES256", "SIGNING_KEY": None, "VERIFYING_KEY": None},
    )
    django.setup()


def _install_urlconf() -> None:
    """The project's URLconf as a module: one DRF view returning `request.user.id`."""
    import sys
    import types

    from django.urls import path
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.response import Response as DrfResponse
    from rest_framework.views import APIView
    from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication

    class WhoAmI(APIView):
        authentication_classes = [JWTStatelessUserAuthentication]
        permission_classes = [IsAuthenticated]

        def get(self, request):
            return DrfResponse({"user_id": request.user.id, "token_type": request.auth["token_type"]})

    mod = types.ModuleType(__name__ + "_urls")
    mod.urlpatterns = [path("api/me/", WhoAmI.as_view())]
    sys.modules[mod.__name__] = mod


class DjangoApi:
    """The Django project as a client sees it, bound to one Portcullis server at a time."""

    def __init__(self):
        from rest_framework.test import APIClient

        self.client = APIClient()

    @contextlib.contextmanager
    def use(
        self,
        server: Server,
        audience: str | None = AUDIENCE,
        algorithm: str = "ES256",
        signing_key: str | None = None,
    ):
        """Points SIMPLE_JWT at `server`'s JWKS (or, for HS*, at `signing_key`, the shared secret)
        and issuer for the duration of the block.

        simplejwt builds its `TokenBackend` once, at import, into
        `rest_framework_simplejwt.state.token_backend`, from `settings.SIMPLE_JWT`. A real project
        has one configuration for its lifetime; this suite talks to several servers, so it
        overrides the setting (simplejwt reloads its settings on Django's `setting_changed`) and
        rebuilds that one backend object from the new settings exactly as `state.py` does.
        The other settings simplejwt reads at import (header name/types, token classes, user-id
        claim, token-type and jti claims) are left at their defaults and do not change.
        """
        from django.test import override_settings
        from rest_framework_simplejwt import settings as sj_settings
        from rest_framework_simplejwt import state
        from rest_framework_simplejwt.backends import TokenBackend

        cfg = {
            "ALGORITHM": algorithm,
            "JWK_URL": None if signing_key else server.jwks_url,
            "SIGNING_KEY": signing_key,
            "VERIFYING_KEY": None,
            "ISSUER": server.issuer,
            "AUDIENCE": audience,
            "LEEWAY": 0,
        }
        saved = state.token_backend
        with override_settings(SIMPLE_JWT=cfg):
            s = sj_settings.api_settings
            assert s.ISSUER == server.issuer and s.ALGORITHM == algorithm  # the reload happened
            state.token_backend = TokenBackend(
                s.ALGORITHM,
                s.SIGNING_KEY,
                s.VERIFYING_KEY,
                s.AUDIENCE,
                s.ISSUER,
                s.JWK_URL,
                s.LEEWAY,
                s.JSON_ENCODER,
            )
            try:
                yield self
            finally:
                state.token_backend = saved

    def get_me(self, token: str | None) -> Response:
        headers = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        r = self.client.get("/api/me/", **headers)
        return Response(r.status_code, r.headers, r.content)


@pytest.fixture(scope="session")
def django_api() -> DjangoApi:
    _configure_django()
    _install_urlconf()
    return DjangoApi()
