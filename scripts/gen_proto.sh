#!/usr/bin/env bash
# Regenerate the committed protobuf/gRPC code from proto/ (the single source of truth).
#   scripts/gen_proto.sh          regenerate in place
#   scripts/gen_proto.sh --check  fail if the committed code is stale
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

# proto/<import package path>/<name>.proto -> <output root>/<import package path>/<name>_pb2*.py
declare -A OUT=(
  [tmax_core]=.
  [tmax_mesh_relay]=plugins/relay
  [tmax_mesh_session_mailbox]=plugins/session_mailbox
)

gen() {  # gen DEST_ROOT
  local dest=$1 pkg root files
  for pkg in "${!OUT[@]}"; do
    [ -d "proto/$pkg" ] || continue
    root="$dest/${OUT[$pkg]}"
    mapfile -t files < <(find "proto/$pkg" -name '*.proto' | sort)
    mkdir -p "$root"
    "$PY" -m grpc_tools.protoc -Iproto --python_out="$root" --pyi_out="$root" \
      --grpc_python_out="$root" "${files[@]}"
  done
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  stale=0
  while IFS= read -r f; do
    rel=${f#"$tmp"/}
    if ! cmp -s "$f" "$rel"; then echo "stale generated code: $rel" >&2; stale=1; fi
  done < <(find "$tmp" -type f -name '*_pb2*.py*')
  [ $stale -eq 0 ] || { echo "run scripts/gen_proto.sh and commit the result" >&2; exit 1; }
  echo "generated protobuf code is up to date"
else
  gen .
fi
