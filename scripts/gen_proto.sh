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

# Protos whose services get no generated gRPC stubs: PeerService is served and
# called with raw bytes (tmax_core/peer.py), so nothing would import them.
NO_GRPC=" proto/tmax_core/proto/mesh.proto "

gen() {  # gen DEST_ROOT
  local dest=$1 pkg root files f grpc
  for pkg in "${!OUT[@]}"; do
    [ -d "proto/$pkg" ] || continue
    root="$dest/${OUT[$pkg]}"
    mapfile -t files < <(find "proto/$pkg" -name '*.proto' | sort)
    grpc=()
    for f in "${files[@]}"; do
      [[ $NO_GRPC == *" $f "* ]] || grpc+=("$f")
    done
    mkdir -p "$root"
    "$PY" -m grpc_tools.protoc -Iproto --python_out="$root" --pyi_out="$root" "${files[@]}"
    if [ ${#grpc[@]} -gt 0 ]; then
      "$PY" -m grpc_tools.protoc -Iproto --grpc_python_out="$root" "${grpc[@]}"
    fi
  done
}

committed() {  # every generated file in the tree, as a path from the repo root
  local pkg dir
  for pkg in "${!OUT[@]}"; do
    dir="${OUT[$pkg]}/$pkg"
    if [ -d "$dir" ]; then
      find "$dir" -path '*/__pycache__' -prune -o -type f -name '*_pb2*.py*' -printf "${dir#./}/%P\n"
    fi
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
  while IFS= read -r rel; do
    [ -e "$tmp/$rel" ] || { echo "generated code no longer generated: $rel" >&2; stale=1; }
  done < <(committed)
  [ $stale -eq 0 ] || { echo "run scripts/gen_proto.sh and commit the result" >&2; exit 1; }
  echo "generated protobuf code is up to date"
else
  gen .
fi
