#!/usr/bin/env bash
# Measure the first `make run` on a fresh machine: a clone of HEAD, an empty cargo home
# (every crate downloaded, tansu installed from source, netwatch built from nothing),
# timed from `make run` until it prints "Netwatch is running"; then Ctrl-C.
# The Rust toolchain (rustup) and Debian packages count as the machine's.
#
#   infra/first-run.sh            prints the minutes and appends them to docs/benchmarks.first-run.md
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/netwatch-first-run.XXXXXX)
trap '[ -n "$run_pid" ] && kill -INT -- -"$run_pid" 2>/dev/null; wait "$run_pid" 2>/dev/null; rm -rf "$work"' EXIT
run_pid=

git clone -q "$top" "$work/netwatch"
# A cargo home of its own, with only the toolchain's proxies on the path: no tansu, no
# downloaded crates, no build output.
mkdir -p "$work/cargo/bin" "$work/bin"
for tool in cargo rustc rustup; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done
export CARGO_HOME=$work/cargo
export PATH=$work/cargo/bin:$work/bin:/usr/local/bin:/usr/bin:/bin
unset CARGO_TARGET_DIR
export BROKER_PORT=${FIRST_RUN_BROKER_PORT:-19792} HTTP_ADDR=127.0.0.1:${FIRST_RUN_HTTP_PORT:-18780}

start=$(date +%s)
(cd "$work/netwatch" && exec setsid make run) >"$work/run.log" 2>&1 &
run_pid=$!
until grep -q "Netwatch is running" "$work/run.log"; do
  if ! kill -0 "$run_pid" 2>/dev/null; then
    tail -20 "$work/run.log" >&2
    echo "make run exited before Netwatch was running" >&2
    exit 1
  fi
  sleep 1
done
took=$(( $(date +%s) - start ))
install=$(grep -o 'tansu installed in [0-9]* s' "$work/run.log" || true)
minutes=$(awk -v s="$took" 'BEGIN { printf "%.1f", s / 60 }')
echo "first make run on a fresh machine: Netwatch running after $minutes min ($took s)${install:+; $install}"
echo "- $(date -u +%Y-%m-%d), commit $(git -C "$top" rev-parse --short HEAD): Netwatch running after $minutes min ($took s)${install:+; $install} (\`infra/first-run.sh\`)" \
  >>"$top/docs/benchmarks.first-run.md"
kill -INT -- -"$run_pid" 2>/dev/null || true
wait "$run_pid" 2>/dev/null || true
run_pid=
