# Sourced by the bench scripts: `start_pool NAME SECONDS ARGS...` starts `sssd pool ARGS...` in the
# background, stops it when the script exits, and sets `url` once it listens (exits 1, with its log,
# if it dies first or takes longer than SECONDS).
start_pool() {
  local name=$1 seconds=$2
  shift 2
  pool_log=$(mktemp)
  node bin/sssd.mjs pool "$@" >"$pool_log" 2>&1 &
  pool=$!
  trap 'kill $pool 2>/dev/null || true; wait $pool 2>/dev/null || true; rm -f "$pool_log"' EXIT
  url=""
  for _ in $(seq 1 $((seconds * 2))); do
    url=$(sed -n 's/^pool listening on \(http:[^ ]*\)$/\1/p' "$pool_log")
    [ -n "$url" ] && return 0
    kill -0 $pool 2>/dev/null || { cat "$pool_log" >&2; echo "$name: the pool exited" >&2; exit 1; }
    sleep 0.5
  done
  cat "$pool_log" >&2
  echo "$name: the pool did not start within $seconds s" >&2
  exit 1
}
