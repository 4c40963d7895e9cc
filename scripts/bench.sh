#!/usr/bin/env bash
# `make bench`: the HTTP load benchmark (docs/BENCHMARKS.md). Builds the release gateway
# and examples/bench.rs, starts the gateway on 127.0.0.1 with everything throw-away in a
# temporary directory (a SoftHSM2 token, a dev CA and server certificate, a software root
# key, an hsm_wrapped customer fragment as the default for new keys, a SQLite store),
# runs the benchmark against it, and removes it all on exit.
#
#   scripts/bench.sh      # BENCH_SECS, BENCH_WARMUP_SECS, BENCH_HTTP, BENCH_SPREAD_KEYS, BENCH_ONLY,
#                         # BENCH_CONCURRENCY and BENCH_LOAD are passed on to the benchmark
#                         # (see examples/bench.rs); BENCH_LOAD=oha (the default) installs
#                         # oha once (BENCH_OHA: an oha binary to use instead);
#                         # BENCH_AUDIT_DURABILITY (group, or sync) sets audit.durability;
#                         # BENCH_GATEWAY_WRAP is a command the gateway runs under
#                         # (scripts/profile.sh sets it to valgrind's callgrind)
#
# Exit status: 0 if every request succeeded, non-zero if the build, the gateway's start
# or any request failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

echo "building the gateway and the benchmark (release)..." >&2
cargo build --release --bin kms-gateway --example bench >&2
target=${CARGO_TARGET_DIR:-$root/target}

# The load generator: oha (default), an external one that peers can be measured with too,
# installed from the Rust package registry once (it needs cmake, installed as root); or
# BENCH_LOAD=own, the benchmark program's own client.
export BENCH_LOAD=${BENCH_LOAD:-oha}
oha_version=1.16.0
if [ "$BENCH_LOAD" = oha ]; then
  oha=${BENCH_OHA:-$target/oha/bin/oha}
  if ! "$oha" --version 2>/dev/null | grep -q " $oha_version\b"; then
    if ! command -v cmake >/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >&2
      else
        echo "bench: oha needs cmake to build (Debian: apt-get install cmake)" >&2; exit 1
      fi
    fi
    echo "installing oha $oha_version (once, into $target/oha)..." >&2
    cargo install oha --version "$oha_version" --locked --root "$target/oha" >&2
    oha=$target/oha/bin/oha
  fi
  export BENCH_OHA=$oha
fi
# BENCH_GATEWAY_BIN: another gateway binary (an earlier commit's, for a before-and-after
# in one sitting); the benchmark program is still this tree's.
bin=${BENCH_GATEWAY_BIN:-$target/release/kms-gateway}
bench=$target/release/examples/bench

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kmsgw-bench.XXXXXX")
gw_pid=""
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Nothing from the caller's gateway settings may leak in: the run is self-contained.
for v in $(compgen -e); do
  case "$v" in KMSGW__*|HSM_*|PKCS11_LIB_PATH|CUSTOMER_FRAGMENTS*|ROOT_ENCRYPTION_KEY*) unset "$v" ;; esac
done
# The token (SoftHSM2), selected by label only; the SO PIN is not the gateway's business.
eval "$(TOKEN_LABEL=kmsgw-bench scripts/hsm-token.sh softhsm "$tmp/hsm")"
unset HSM_SLOT HSM_SO_PIN
export HSM_KEY_LABEL=kmsgw-bench-root
scripts/dev-cert.sh "$tmp/tls"
(umask 077; head -c 32 /dev/urandom | base64 > "$tmp/root.key")
mkdir -p "$tmp/data"
export CUSTOMER_FRAGMENTS_FILE=$tmp/customer_fragments.json
# Both commands run in $tmp, so that no kms-gateway.toml of the caller's directory is read.
fragment=$(cd "$tmp" && "$bin" gen-customer-fragment --name bench --type hsm_wrapped \
  --hsm-key-label bench-fragment --output "$CUSTOMER_FRAGMENTS_FILE" 2>"$tmp/cli.log") || {
  echo "bench: gen-customer-fragment failed:" >&2; cat "$tmp/cli.log" >&2; exit 1; }
export KMSGW__FRAGMENTS__DEFAULT=$fragment
# A second fragment, hsm_secured (derived in the HSM on every use), for its own row.
BENCH_SECURED_FRAGMENT=$(cd "$tmp" && "$bin" gen-customer-fragment --name bench-secured \
  --type hsm_secured --hsm-key-label bench-secured --output "$CUSTOMER_FRAGMENTS_FILE" 2>"$tmp/cli.log") || {
  echo "bench: gen-customer-fragment (hsm_secured) failed:" >&2; cat "$tmp/cli.log" >&2; exit 1; }
export BENCH_SECURED_FRAGMENT
export ROOT_ENCRYPTION_KEY_FILE=$tmp/root.key
export KMSGW__TLS__CERT_FILE=$tmp/tls/cert.pem
export KMSGW__TLS__KEY_FILE=$tmp/tls/key.pem
export KMSGW__STORE__URL=sqlite://$tmp/data/kms-gateway.db
export KMSGW__SERVER__LISTEN=127.0.0.1:0
# Every client connects from 127.0.0.1: room for the 64-connection rows and more.
export KMSGW__SERVER__MAX_CONNECTIONS_PER_ADDRESS=512
# The XKS proxy API, at the prefix examples/bench.rs uses.
export KMSGW__XKS__ENABLED=true KMSGW__XKS__URI_PATH_PREFIX=/bench
# The audit log's durability level (docs/SECURITY.md): BENCH_AUDIT_DURABILITY=sync
# measures the level where every commit is synced before its answer.
export KMSGW__AUDIT__DURABILITY=${BENCH_AUDIT_DURABILITY:-group}
echo "audit.durability: $KMSGW__AUDIT__DURABILITY" >&2

# Start the gateway; warnings and errors only, so that logging does not dominate. Sets
# gw_pid and base (empty if it did not start).
start_gateway() {
  rm -f "$tmp/stdout"
  # shellcheck disable=SC2086  # BENCH_GATEWAY_WRAP is a command line, split on purpose
  (cd "$tmp" && RUST_LOG=warn exec ${BENCH_GATEWAY_WRAP:-} "$bin" serve >"$tmp/stdout" 2>>"$tmp/gateway.log") &
  gw_pid=$!
  base=""
  for _ in $(seq 1 3000); do   # up to 300 s (a profiler slows the start down)
    line=$(grep -m1 '^listening on https://' "$tmp/stdout" 2>/dev/null || true)
    if [ -n "$line" ]; then base=${line#listening on }; break; fi
    if ! kill -0 "$gw_pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
}
start_gateway
export BENCH_GATEWAY_PID=$gw_pid BENCH_SCRATCH=$tmp
if [ -z "$base" ]; then
  echo "bench: the gateway did not start; its log:" >&2
  cat "$tmp/gateway.log" >&2
  exit 1
fi
echo "gateway listening on $base (pid $gw_pid, log $tmp/gateway.log)" >&2

model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "machine: $(nproc) cores (nproc), ${model:-unknown CPU}, $mem RAM, $(uname -sr);" \
  "client and gateway share these cores"
built="$(git -C "$root" describe --always --dirty 2>/dev/null || echo 'unknown commit')"
[ -n "${BENCH_GATEWAY_BIN:-}" ] && built="$bin (BENCH_GATEWAY_BIN; the benchmark program is $built)"
echo "gateway: $built, release build, RUST_LOG=warn, SoftHSM2 $(softhsm2-util --version 2>/dev/null || echo '?')"

set +e
"$bench" "$base" "$tmp/tls/ca.pem" "$tmp/data/bootstrap-token"
rc=$?
set -e
echo "database after the run: $(du -sh "$tmp/data" | cut -f1) (SQLite, WAL included)"
if ! kill -0 "$gw_pid" 2>/dev/null; then
  echo "bench: the gateway exited during the run; its log:" >&2
  cat "$tmp/gateway.log" >&2
  rc=1
elif [ "$rc" -ne 0 ] && [ -s "$tmp/gateway.log" ]; then
  echo "bench: the gateway's log (last 40 lines):" >&2
  tail -n 40 "$tmp/gateway.log" >&2
elif [ -z "${BENCH_GATEWAY_WRAP:-}" ]; then
  # Start-up time with everything the run made (keys, audit records): stop, start again.
  kill -TERM "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
  t0=$(date +%s.%N)
  start_gateway
  t1=$(date +%s.%N)
  if [ -z "$base" ]; then
    echo "bench: the gateway did not start again; its log:" >&2
    tail -n 40 "$tmp/gateway.log" >&2
    rc=1
  else
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "gateway start-up with this database: %.2f s to its listening line\n", b - a }'
  fi
fi
exit "$rc"
