#!/usr/bin/env bash
# The Python interop suites (PyJWT, Django + djangorestframework-simplejwt, svix, clerk-backend-api
# against the real portcullis binary): keeps tests/interop/.venv in step with python/requirements.txt, then runs
# `pytest -q tests/interop/python` from the repository root and exits with pytest's status.
#
# The venv is (re)built only when it is missing or requirements.txt (or the Python version)
# changed since the last install, recorded in a stamp file inside the venv.
# Environment: PORTCULLIS_BIN (default target/debug/portcullis under the repo root), PYTHON
# (default python3). Extra arguments go to pytest, e.g. `-k rotation` or `-x`.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=tests/interop/.venv
REQS=tests/interop/python/requirements.txt
STAMP=$VENV/.requirements.stamp

want="$(sha256sum "$REQS" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
have=$(cat "$STAMP" 2>/dev/null || true)
if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
  echo "==> installing the pinned Python clients into $VENV" >&2
  rm -f "$STAMP"
  "$PYTHON" -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
  "$VENV/bin/python" -m pip check >&2
  echo "$want" >"$STAMP"
fi

set +e
"$VENV/bin/python" -m pytest -q tests/interop/python "$@"
exit $?
