# Shared shell helpers for scripts/test and the benchmark: a throwaway PostgreSQL cluster,
# a portcullis server on free ports and a real SMTP server (aiosmtpd) for its mail.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

PG_DIR=""; PG_BIN=""
start_postgres() { # dir -> sets PG_URL
  PG_DIR=$1
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  mkdir -p "$PG_DIR"
  local as=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
  local port; port=$(free_port)
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200" start >/dev/null
  "${as[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres portcullis
  PG_URL="postgres://postgres@127.0.0.1:$port/portcullis"
}

stop_postgres() {
  [ -n "$PG_DIR" ] || return 0
  local as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  PG_DIR=""
}

SERVER_PID=""
start_portcullis() { # dsn logfile [extra env...] -> sets PUBLIC_URL ADMIN_URL
  # PUBLIC_HOST/PUBLIC_PORT (optional, set by the caller): the public URL's host and port
  # (WebAuthn pages must be on http://localhost).
  local dsn=$1 logfile=$2; shift 2
  local pp ap host=${PUBLIC_HOST:-127.0.0.1}; pp=${PUBLIC_PORT:-$(free_port)}; ap=$(free_port)
  local base=()
  [ "$host" = 127.0.0.1 ] || base=(PORTCULLIS_SERVE_PUBLIC_BASE_URL="http://$host:$pp/")
  # Every client of these suites is 127.0.0.1; the per-IP limits have their own API tests.
  env PORTCULLIS_DSN="$dsn" PORTCULLIS_SERVE_PUBLIC_PORT="$pp" PORTCULLIS_SERVE_ADMIN_PORT="$ap" \
    PORTCULLIS_SECURITY_RATE_LIMIT_ENABLED=false "${base[@]}" "$@" \
    "${BIN:?}" serve --dev >"$logfile" 2>&1 &
  SERVER_PID=$!
  PUBLIC_URL="http://$host:$pp"; ADMIN_URL="http://127.0.0.1:$ap"
  for _ in $(seq 1 100); do
    if curl -fsS "$PUBLIC_URL/health/ready" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$logfile"; return 1; }
    sleep 0.1
  done
  cat "$logfile"; return 1
}

stop_portcullis() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# Waits until a helper process (pid) prints "ready" to its logfile; shows the log if it dies
# or takes more than 10 s.
await_ready() { # logfile pid
  local logfile=$1 pid=$2
  for _ in $(seq 1 100); do
    grep -q '^ready' "$logfile" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$logfile"; return 1; }
    sleep 0.1
  done
  cat "$logfile"; return 1
}

# Stops a helper process started in the background (its pid variable is named $1).
stop_helper() { # pid-variable-name
  local pid=${!1}
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf -v "$1" '%s' ""
}

IDP_PID=""
start_idp() { # redirect-uri logfile -> sets IDP_URL (tests/interop/idp/oidc-provider.mjs, a real OpenID provider)
  local redirect=$1 logfile=$2 port; port=$(free_port)
  node "$ROOT/tests/interop/idp/oidc-provider.mjs" --port "$port" --redirect "$redirect" >"$logfile" 2>&1 &
  IDP_PID=$!
  IDP_URL="http://127.0.0.1:$port"
  await_ready "$logfile" "$IDP_PID"
}

stop_idp() { stop_helper IDP_PID; }

# The provider block of a server whose social sign-in goes to the local provider at IDP_URL.
idp_provider_env() {
  local mapper; mapper=$(base64 -w0 "$ROOT/tests/interop/idp/mapper.jsonnet")
  printf '%s' "[{\"id\":\"local\",\"label\":\"Local IdP\",\"provider\":\"generic\",\"client_id\":\"portcullis\",\"client_secret\":\"portcullis-test-secret\",\"issuer_url\":\"$IDP_URL\",\"mapper_url\":\"base64://$mapper\",\"scope\":[\"email\",\"profile\"]}]"
}

SINK_PID=""
start_smtp_sink() { # dir -> sets SMTP_PORT (tests/interop/smtp_sink.py in the interop venv)
  local dir=$1
  SMTP_PORT=$(free_port)
  mkdir -p "$dir"
  "${VENV_PYTHON:?}" tests/interop/smtp_sink.py --port "$SMTP_PORT" --dir "$dir" >"$dir.log" 2>&1 &
  SINK_PID=$!
  await_ready "$dir.log" "$SINK_PID"
}

stop_smtp_sink() { stop_helper SINK_PID; }
