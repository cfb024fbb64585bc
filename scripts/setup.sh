#!/usr/bin/env bash
# Create .venv and install tmax-mesh with every plugin from this checkout.
# Idempotent: re-running only updates what changed.
#   scripts/setup.sh          runtime install (core + plugins + example plugin)
#   scripts/setup.sh --dev    also the test and tooling dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python 3.11+ is required ($PY is $("$PY" --version 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# One command, core first: pip resolves the plugin -> core dependency only in this order.
.venv/bin/python -m pip install --quiet \
  -e . -e plugins/relay -e plugins/direct -e plugins/session_mailbox -e plugins/ratelimit \
  -e examples/task_update_plugin
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt -e 'plugins/relay[cluster]'
  # The third-party runtime wheels, for tests/e2e/test_packaging.py: it installs
  # the built wheels into a fresh venv with --no-index. Fetched again (network)
  # only when a pyproject.toml changed.
  stamp=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat .venv/wheelhouse/.stamp 2>/dev/null)" != "$stamp" ]; then
    rm -rf .venv/wheelhouse
    .venv/bin/python -m pip download --quiet --dest .venv/wheelhouse \
      . plugins/relay plugins/direct plugins/session_mailbox plugins/ratelimit
    echo "$stamp" >.venv/wheelhouse/.stamp
  fi
fi
echo "setup: installed into $(pwd)/.venv ($(.venv/bin/tmax-mesh --version))"
