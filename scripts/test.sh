#!/usr/bin/env bash
# Set up everything the tests need and run them all: generated-code check,
# lint, then pytest (unit, end-to-end, NAT lab when root with ip + nft).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ] && ! { command -v nft && command -v ip; } >/dev/null 2>&1; then
  echo "test: installing nftables and iproute2 for the NAT lab"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 >/dev/null
fi
scripts/setup.sh --dev
# The tests start some thousand tmax-node/tmax-mesh processes from this checkout
# (editable): with their bytecode written once here, none of them compiles it
# again (PYTHONDONTWRITEBYTECODE, if set, stops each from keeping its own).
.venv/bin/python -m compileall -q tmax_core plugins examples tests
PYTHON=.venv/bin/python scripts/gen_proto.sh --check
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # the core and the four plugins ([tool.mypy] in pyproject.toml)
exec .venv/bin/python -m pytest -p no:cacheprovider -q --durations=15 "$@"  # the slowest: keep CI well under 20 min
