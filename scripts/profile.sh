#!/usr/bin/env bash
# `make profile`: where the gateway's instructions go per request (issue 18,
# docs/BENCHMARKS.md). Runs scripts/bench.sh with the gateway under valgrind's callgrind,
# which counts instructions (repeatable on a busy machine, unlike seconds), collecting only
# from the end of the benchmark's setup to the end of its rows, then prints the
# instructions per request, by component.
#
#   scripts/profile.sh [OUT]   # OUT: the callgrind file kept (default callgrind.gateway.out)
#
# What is measured is chosen as for the benchmark: BENCH_ONLY (default "encrypt 1 KiB aes"),
# BENCH_CONCURRENCY (default 16), BENCH_SECS (default 5), BENCH_AUDIT_DURABILITY.
# The release build gets line tables (CARGO_PROFILE_RELEASE_DEBUG=line-tables-only), so
# use a CARGO_TARGET_DIR of its own if the plain release build should stay as it is.
# Exit status: non-zero if the benchmark or the profile failed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-callgrind.gateway.out}")

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
  else
    echo "profile: valgrind is needed (Debian: apt-get install valgrind)" >&2
    exit 1
  fi
fi

export CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-line-tables-only}
export BENCH_ONLY=${BENCH_ONLY:-encrypt 1 KiB aes} BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-16}
export BENCH_SECS=${BENCH_SECS:-5} BENCH_SPREAD_KEYS=${BENCH_SPREAD_KEYS:-0}
# Instrumentation is off at the start (the gateway's own start-up is not the request path)
# and switched on by the benchmark once its keys exist; the file is written at the exit.
export BENCH_GATEWAY_WRAP="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$out"
# shellcheck disable=SC2016  # expanded by the benchmark's shell, which knows the pid
export BENCH_BEFORE_ROWS='callgrind_control -i on "$BENCH_GATEWAY_PID" >/dev/null'
log=$(mktemp "${TMPDIR:-/tmp}/kmsgw-profile.XXXXXX")
trap 'rm -f "$log"' EXIT
scripts/bench.sh | tee "$log"
requests=$(sed -n 's/^requests sent to the gateway by the rows (warm-ups included): //p' "$log")
[ -s "$out" ] || { echo "profile: callgrind wrote no $out" >&2; exit 1; }
callgrind_annotate --auto=no --threshold=100 --inclusive=no "$out" >"$out.self.txt"
callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$out" >"$out.inclusive.txt"
python3 scripts/profile_table.py "$out.self.txt" "$out.inclusive.txt" "$out" "${requests:-0}"
echo "callgrind file: $out (callgrind_annotate $out; annotated lists beside it)"
