#!/usr/bin/env bash
# The serving figures of docs/benchmarks.md: a fresh pool on the CPU, then
# `sssd bench-serve` against it (with --phases), then the pool stopped.
#
#   bash scripts/bench-serve.sh                          # 1,8,32,128, --repeat 3, off,pld,sssd
#   bash scripts/bench-serve.sh 1,8,32 2 off,sssd        # concurrencies, replays, methods
#   DATASTORE=none bash scripts/bench-serve.sh 8,32 2 off,sssd   # a pool without a datastore
#
# MODEL, TOKENIZER, WORKLOAD and DATASTORE default to the shared stories260K
# files and the datastore `npm start` builds; PORT to a free one. Extra
# bench-serve flags go in BENCH_FLAGS (e.g. BENCH_FLAGS=--json).
set -euo pipefail
# Paths given are taken from the caller's folder; the defaults from the repository (SSSD_SHARED_DIR: the data's).
from=$PWD
given() { case "$1" in /*|none) printf '%s' "$1" ;; *) printf '%s/%s' "$from" "$1" ;; esac; }
cd "$(dirname "$0")/.."
SHARED=${SSSD_SHARED_DIR:+$(cd "$from" && cd "$SSSD_SHARED_DIR" && pwd)}
SHARED=${SHARED:-../shared}
CONC=${1:-1,8,32,128}
REPEAT=${2:-3}
METHODS=${3:-off,pld,sssd}
PORT=${PORT:-0}
MODEL=$( [ -n "${MODEL:-}" ] && given "$MODEL" || printf '%s' "$SHARED/models/stories260K/stories260K.bin")
TOKENIZER=$( [ -n "${TOKENIZER:-}" ] && given "$TOKENIZER" || printf '%s' "$SHARED/models/stories260K/tok512.bin")
WORKLOAD=$( [ -n "${WORKLOAD:-}" ] && given "$WORKLOAD" || printf '%s' "$SHARED/workloads/dev-sessions.jsonl")
DATASTORE=$( [ -n "${DATASTORE:-}" ] && given "$DATASTORE" || printf '%s' ".cache/datastore/stories260K.self.sssd-ds")
export SSSD_POOL_TOKEN=${SSSD_POOL_TOKEN:-bench-serve}

datastore_flag=()
if [ "$DATASTORE" != none ]; then
  [ -f "$DATASTORE" ] || { echo "bench-serve.sh: no datastore at $DATASTORE (npm start builds it; DATASTORE=none runs without)" >&2; exit 2; }
  datastore_flag=(--datastore "$DATASTORE")
fi
# shellcheck source=scripts/start-pool.sh
. scripts/start-pool.sh
start_pool bench-serve.sh 300 --model "$MODEL" --tokenizer "$TOKENIZER" "${datastore_flag[@]}" --port "$PORT"
# shellcheck disable=SC2086
node bin/sssd.mjs bench-serve --pool "$url" --workload "$WORKLOAD" --concurrency "$CONC" --methods "$METHODS" --repeat "$REPEAT" --phases ${BENCH_FLAGS:-}
