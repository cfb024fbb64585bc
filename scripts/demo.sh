#!/usr/bin/env bash
# The main job, on loopback with the embedded defaults: a relay host and two
# nodes with no listeners (as if each sat behind its own NAT) become friends
# through an invite and exchange messages through the relay.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$(pwd)/.venv/bin:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/tmax-demo.XXXXXX")
pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
wait_ready() {  # wait_ready FILE PID
  for _ in $(seq 300); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "demo: process $2 died; log:" >&2; cat "$1.log" >&2 || true; exit 1; }
    sleep 0.1
  done
  echo "demo: timed out waiting for $1" >&2; exit 1
}

step "start the relay host (tmax-host) on 127.0.0.1, any free port"
tmax-host --listen 127.0.0.1:0 --ready-file "$work/host.json" 2>"$work/host.json.log" &
pids+=($!); wait_ready "$work/host.json" $!
relay="grpc://$(json_field "$work/host.json" listen)"
echo "relay: $relay"

for who in alice bob; do
  step "start node $who: no peer listener, dials out to the relay only"
  TMAX_MESH_NODE_ALIAS=$who tmax-node --state-dir "$work/$who" --relay "$relay" \
    --ready-file "$work/$who.json" 2>"$work/$who.json.log" &
  pids+=($!); wait_ready "$work/$who.json" $!
  echo "$who: $(json_field "$work/$who.json" node_id)"
done
alice() { tmax-mesh --state-dir "$work/alice" "$@"; }
bob() { tmax-mesh --state-dir "$work/bob" "$@"; }

step "alice creates an invite (signed, single-use, expires in 24h; carries the relay URL)"
token=$(alice invite create --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "$token"

step "bob accepts it: alice becomes bob's friend, and bob's first contact makes bob alice's friend"
bob invite accept "$token"

step "bob -> alice, through the relay (sealed end to end; the relay sees ciphertext only)"
bob msg send --to alice --wait "hello alice, this is bob"
for _ in $(seq 100); do alice friends list --json | grep -q '"bob"' && break; sleep 0.1; done

step "alice's inbox"
alice inbox list

step "alice -> bob, using the contact card bob sent on first contact"
alice msg send --to bob --wait "hi bob! got your message"
alice msg send --to bob --wait "and a second one"

step "bob's inbox"
bob inbox list

step "status on both sides"
alice node status
echo
bob node status
step "done: messages went node -> relay -> node, both ways"
