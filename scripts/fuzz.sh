#!/usr/bin/env bash
# The cargo fuzz targets of fuzz/, each for a bounded time (`make test-fuzz`):
#
#   scripts/fuzz.sh [TARGET...]
#
# With no arguments every target that `cargo fuzz list` names is run (KMSGW_FUZZ_TARGETS,
# space-separated, overrides that). Each runs for KMSGW_FUZZ_SECONDS (default 30) with
# -max_len=65536 -rss_limit_mb=512, starting from the committed seeds in fuzz/seeds/TARGET/
# and the local corpus fuzz/corpus/TARGET/ (not committed; it grows from run to run).
#
# The toolchain is stable, so the targets are built with `--sanitizer none`: the
# sanitizers need nightly's -Z flags, and the code under test is safe Rust, whose
# panics, overflows (debug assertions are on) and aborts libFuzzer catches by itself.
# cargo-fuzz is installed from the Rust package registry (pinned below) when `cargo fuzz` is missing.
# Exits non-zero when a target finds a crash, naming the input left in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CARGO_FUZZ_VERSION=0.13.2
seconds=${KMSGW_FUZZ_SECONDS:-30}

say() { echo "fuzz: $*" >&2; }
die() { say "$*"; exit 1; }

[[ $seconds =~ ^[0-9]+$ ]] && ((seconds > 0)) || die "KMSGW_FUZZ_SECONDS must be a positive integer"
command -v cargo >/dev/null || die "cargo not found"
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# Builds go to fuzz/target whatever the caller's CARGO_TARGET_DIR: they use other flags.
fuzz=(cargo fuzz run --sanitizer none --target-dir "$root/fuzz/target")

if (($# > 0)); then
    targets=("$@")
elif [[ -n ${KMSGW_FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$KMSGW_FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi
((${#targets[@]} > 0)) || die "no fuzz targets"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    seeds="fuzz/seeds/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus")
    [[ -d $seeds ]] && dirs+=("$seeds")
    stamp="$logs/$target.start"
    touch "$stamp"
    say "$target: ${seconds}s from ${dirs[*]}"
    started=$SECONDS
    status=0
    "${fuzz[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=512 -timeout=10 \
        -print_final_stats=1 >"$logs/$target.log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -n 1)
    say "$target: exit $status after $((SECONDS - started))s (build included), ${runs:-?} executions"
    if ((status != 0)); then
        grep -A 3 "panicked at" "$logs/$target.log" >&2 || true
        tail -n 40 "$logs/$target.log" >&2
        found=$(find "$artifacts" -type f -newer "$stamp" | sort)
        if [[ -n $found ]]; then
            while read -r input; do
                say "$target: crashing input: $input (replay: ${fuzz[*]} $target $input)"
            done <<<"$found"
        fi
        failed+=("$target")
    fi
done

((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
say "all ${#targets[@]} target(s) ran ${seconds}s each without a crash"
