#!/usr/bin/env bash
# Create a throw-away Kryoptic PKCS#11 token in DIR and print the environment to use it.
#
#   scripts/kryoptic-token.sh DIR
#
# Builds (or reuses) the Kryoptic module via kryoptic-build.sh, writes DIR/kryoptic.conf
# (one sqlite-backed slot, database DIR/token.sql; a token already in DIR is discarded),
# initialises the token with pkcs11-tool and prints only these lines on stdout:
#   export PKCS11_LIB_PATH=... KRYOPTIC_CONF=... HSM_TOKEN_LABEL=... HSM_PIN=...
#   export HSM_SO_PIN=... HSM_SLOT=...   (one per line; HSM_SLOT is the decimal slot id)
# Labels and PINs come from TOKEN_LABEL, USER_PIN and SO_PIN (defaults below).
set -euo pipefail

if [ "$#" -ne 1 ]; then echo "usage: $0 DIR" >&2; exit 2; fi
label=${TOKEN_LABEL:-kmsgw-test}
user_pin=${USER_PIN:-1234}
so_pin=${SO_PIN:-12345678}
slot_num=1   # Kryoptic slot ids are fixed by the config file
here=$(cd "$(dirname "$0")" && pwd)

lib=$("$here/kryoptic-build.sh")
command -v pkcs11-tool >/dev/null || { echo "pkcs11-tool not found (Debian: apt-get install opensc)" >&2; exit 1; }
mkdir -p "$1"
dir=$(cd "$1" && pwd)
conf=$dir/kryoptic.conf
rm -f "$dir"/token.sql*
cat > "$conf" <<EOF
[[slots]]
slot = $slot_num
dbtype = "sqlite"
dbargs = "$dir/token.sql"
EOF
export KRYOPTIC_CONF=$conf

p11() { pkcs11-tool --module "$lib" --slot "$slot_num" "$@" >&2; }
p11 --init-token --label "$label" --so-pin "$so_pin"
p11 --login --login-type so --so-pin "$so_pin" --init-pin --new-pin "$user_pin"

# Read the slot id back the way pkcs11-tool reports it: "Slot 0 (0x1): ..."
slot_hex=$(pkcs11-tool --module "$lib" --list-slots | sed -n 's/^Slot [0-9]* (\(0x[0-9a-fA-F]*\)).*/\1/p' | head -n1)
[ -n "$slot_hex" ] || { echo "Kryoptic reports no slot (config $conf)" >&2; exit 1; }

echo "export PKCS11_LIB_PATH=$lib"
echo "export KRYOPTIC_CONF=$conf"
echo "export HSM_TOKEN_LABEL=$label"
echo "export HSM_PIN=$user_pin"
echo "export HSM_SO_PIN=$so_pin"
echo "export HSM_SLOT=$((slot_hex))"
