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
pip=(.venv/bin/python -m pip)
# setuptools tells of every editable install it makes without an isolated build
# (a dozen lines each): information only.
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation"
# The build backend goes into the venv once, so that the local projects below
# build without an isolated environment each (most of a fresh install's time).
"${pip[@]}" install --quiet --upgrade pip 'setuptools>=77'
# Core first: pip resolves the plugin -> core dependency only in this order.
local_projects=(-e . -e plugins/relay -e plugins/direct -e plugins/session_mailbox -e plugins/ratelimit
  -e examples/task_update_plugin)
if [ "${1:-}" != "--dev" ]; then
  "${pip[@]}" install --quiet --no-build-isolation "${local_projects[@]}"
else
  # The third-party runtime wheels, for tests/e2e/test_packaging.py: it installs
  # the built wheels into a fresh venv with --no-index. Fetched again (network)
  # only when a pyproject.toml changed, in the background while the install
  # below runs (third-party requirements only: no local project builds twice at once).
  stamp=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
  fetch=
  if [ "$(cat .venv/wheelhouse/.stamp 2>/dev/null)" != "$stamp" ]; then
    rm -rf .venv/wheelhouse
    mapfile -t third_party < <(.venv/bin/python scripts/runtime_requirements.py)
    "${pip[@]}" download --quiet --dest .venv/wheelhouse "${third_party[@]}" &
    fetch=$!
    trap 'kill "$fetch" 2>/dev/null || true' EXIT # a failed install stops the fetch too
  fi
  # One resolver run for the runtime and the dev dependencies.
  "${pip[@]}" install --quiet --no-build-isolation "${local_projects[@]}" \
    -r requirements-dev.txt -e 'plugins/relay[cluster]'
  if [ -n "$fetch" ]; then
    wait "$fetch" || { echo "setup: downloading .venv/wheelhouse failed" >&2; exit 1; }
    echo "$stamp" >.venv/wheelhouse/.stamp
  fi
fi
echo "setup: installed into $(pwd)/.venv ($(.venv/bin/tmax-mesh --version))"
