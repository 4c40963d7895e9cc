#!/usr/bin/env bash
# Create a throw-away PKCS#11 token in DIR and print the environment to use it.
#
#   scripts/hsm-token.sh [softhsm|kryoptic] DIR
#
# Prints `export NAME=value` lines (PKCS11_LIB_PATH, SOFTHSM2_CONF or KRYOPTIC_CONF,
# HSM_TOKEN_LABEL, HSM_PIN, HSM_SO_PIN, HSM_SLOT) and nothing else on stdout, so that
#   eval "$(scripts/hsm-token.sh softhsm /tmp/tok)"
# points the gateway, its CLI and its tests at the new token.
# Labels and PINs come from TOKEN_LABEL, USER_PIN and SO_PIN (defaults below).
set -euo pipefail

module=softhsm
if [ "$#" -eq 2 ]; then module=$1; shift; fi
if [ "$#" -ne 1 ]; then echo "usage: $0 [softhsm|kryoptic] DIR" >&2; exit 2; fi
dir=$1
label=${TOKEN_LABEL:-kmsgw-test}
user_pin=${USER_PIN:-1234}
so_pin=${SO_PIN:-12345678}
here=$(cd "$(dirname "$0")" && pwd)

case "$module" in
  softhsm)
    lib=""
    for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
                     /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
      if [ -f "$candidate" ]; then lib=$candidate; break; fi
    done
    if [ -z "$lib" ] || ! command -v softhsm2-util >/dev/null; then
      echo "softhsm2 is not installed (Debian: apt-get install softhsm2)" >&2; exit 1
    fi
    mkdir -p "$dir/tokens"
    dir=$(cd "$dir" && pwd)
    conf="$dir/softhsm2.conf"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" > "$conf"
    export SOFTHSM2_CONF=$conf
    softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$user_pin" >/dev/null
    slot=$(softhsm2-util --show-slots | awk -v l="$label" '
      /^Slot [0-9]+/ { s=$2 } /Label:/ { sub(/^[ \t]*Label:[ \t]*/, ""); sub(/[ \t]+$/, ""); if ($0 == l) { print s; exit } }')
    echo "export PKCS11_LIB_PATH=$lib"
    echo "export SOFTHSM2_CONF=$conf"
    ;;
  kryoptic)
    exec env TOKEN_LABEL="$label" USER_PIN="$user_pin" SO_PIN="$so_pin" "$here/kryoptic-token.sh" "$dir"
    ;;
  *) echo "unknown module '$module' (softhsm or kryoptic)" >&2; exit 2 ;;
esac
echo "export HSM_TOKEN_LABEL=$label"
echo "export HSM_PIN=$user_pin"
echo "export HSM_SO_PIN=$so_pin"
echo "export HSM_SLOT=$slot"
