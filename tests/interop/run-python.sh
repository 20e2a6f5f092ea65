#!/usr/bin/env bash
# The Python interop suites (PyJWT, Django + djangorestframework-simplejwt, svix, clerk-backend-api,
# and the courier against a real SMTP server (aiosmtpd) with the real portcullis binary): keeps
# tests/interop/.venv in step with python/requirements.txt (python-venv.sh), then runs
# `pytest -q tests/interop/python` from the repository root and exits with pytest's status.
#
# Environment: PORTCULLIS_BIN (default target/debug/portcullis under the repo root), PYTHON
# (default python3). Extra arguments go to pytest, e.g. `-k rotation` or `-x`.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=tests/interop/python-venv.sh
. tests/interop/python-venv.sh

set +e
"$VENV_PYTHON" -m pytest -q tests/interop/python "$@"
exit $?
