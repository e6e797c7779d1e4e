#!/usr/bin/env bash
# One pass over what a GPU host must show before it serves: greedy output on
# the GPU equals the CPU's, the pool's suites on that provider (lossless
# fixtures, exact sampling, the API), the ceiling of speculation there
# (bench-decode --accepted), and sssd against off through a real pool
# (bench-serve).
#
#   bash scripts/gpu-check.sh                    # WebGPU (needs a Vulkan driver)
#   EP=cuda bash scripts/gpu-check.sh            # after the CUDA provider install (README)
#   CONC=1,8 LIMIT=8 CEILING=0 SUITES=0 bash scripts/gpu-check.sh   # shorter: no bench-decode, no suites
#
# MODEL, TOKENIZER, DATASTORE and WORKLOAD default to the shared stories260K
# files and the datastore `npm start` builds; PORT to a free one. Where there
# is no ../shared (a production host), name the served files and leave out the
# suites, which read its fixtures (paths given are taken from the folder it is
# run from, as bench-serve.sh and `sssd up` take them):
#   MODEL=… TOKENIZER=… WORKLOAD=… SUITES=0 EP=cuda bash scripts/gpu-check.sh
set -euo pipefail
# Paths given are taken from the caller's folder; the defaults from the repository.
from=$PWD
given() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$from" "$1" ;; esac; }
cd "$(dirname "$0")/.."
EP=${EP:-webgpu}
CONC=${CONC:-1,8,32,128}
LIMIT=${LIMIT:-96}
PORT=${PORT:-0}
MODEL=$( [ -n "${MODEL:-}" ] && given "$MODEL" || printf '%s' ../shared/models/stories260K/stories260K.bin)
TOKENIZER=$( [ -n "${TOKENIZER:-}" ] && given "$TOKENIZER" || printf '%s' ../shared/models/stories260K/tok512.bin)
WORKLOAD=$( [ -n "${WORKLOAD:-}" ] && given "$WORKLOAD" || printf '%s' ../shared/workloads/dev-sessions.jsonl)
DATASTORE=$( [ -n "${DATASTORE:-}" ] && given "$DATASTORE" || printf '%s' .cache/datastore/stories260K.self.sssd-ds)
export SSSD_POOL_TOKEN=${SSSD_POOL_TOKEN:-gpu-check}
sssd() { node bin/sssd.mjs "$@"; }

echo "== greedy output, cpu against $EP"
prompt="Once upon a time, there was a little dog"
cpu=$(sssd generate --model "$MODEL" --tokenizer "$TOKENIZER" --prompt "$prompt" --max-tokens 200 --json)
gpu=$(sssd generate --model "$MODEL" --tokenizer "$TOKENIZER" --prompt "$prompt" --max-tokens 200 --json --execution-provider "$EP")
ids() { node -e 'process.stdout.write(JSON.stringify(JSON.parse(process.argv[1]).output_ids))' "$1"; }
if [ "$(ids "$cpu")" != "$(ids "$gpu")" ]; then
  echo "gpu-check: $EP's greedy output differs from the CPU's" >&2
  exit 1
fi
echo "identical ($(node -e 'process.stdout.write(String(JSON.parse(process.argv[1]).output_ids.length))' "$cpu") tokens)"

if [ "${SUITES:-1}" != 0 ]; then
  echo "== the pool's suites on $EP"
  # The tests read the provider from the environment; those of the CPU's own
  # layout (host keys/values, split and grouped passes) name the CPU.
  SSSD_EXECUTION_PROVIDER=$EP npx vitest run test/gpu-pool/server test/gpu-pool/runtime test/gpu-pool/verify --testTimeout 600000 --hookTimeout 600000
fi

if [ "${CEILING:-1}" != 0 ]; then
  echo "== ceiling on $EP (perfect drafts)"
  sssd bench-decode --model "$MODEL" --execution-provider "$EP" --batch 1,8,32,128 --accepted 0,1,3,7 --tokens 48 --rounds 3
fi

echo "== pool on $EP"
datastore_flag=()
[ -f "$DATASTORE" ] && datastore_flag=(--datastore "$DATASTORE")
# shellcheck source=scripts/start-pool.sh
. scripts/start-pool.sh
SSSD_EXECUTION_PROVIDER=$EP start_pool gpu-check 600 --model "$MODEL" --tokenizer "$TOKENIZER" "${datastore_flag[@]}" --port "$PORT"
cat "$pool_log"
# One concurrency at a time, so a slow provider still prints what it finished.
for c in ${CONC//,/ }; do
  sssd bench-serve --pool "$url" --workload "$WORKLOAD" --concurrency "$c" --limit "$LIMIT" --methods off,pld,sssd
done
