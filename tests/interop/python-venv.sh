#!/usr/bin/env bash
# Keeps tests/interop/.venv in step with tests/interop/python/requirements.txt (the pinned Python
# clients and aiosmtpd for tests/interop/smtp_sink.py). Sourced by run-python.sh and scripts/test
# from the repository root; sets VENV_PYTHON.
#
# The venv is (re)built only when it is missing or requirements.txt (or the Python version)
# changed since the last install, recorded in a stamp file inside the venv.
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
VENV_PYTHON=$VENV/bin/python
