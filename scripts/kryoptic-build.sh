#!/usr/bin/env bash
# Build the Kryoptic PKCS#11 module (Rust crate `kryoptic` 1.5.4) once and cache it.
#
#   scripts/kryoptic-build.sh
#
# Prints only the absolute path of the cached module on stdout (progress goes to stderr):
#   ${KMSGW_CACHE_DIR:-$HOME/.cache/kms-gateway}/kryoptic-1.5.4/libkryoptic_pkcs11.so
# If that file already exists nothing is built. Kryoptic's default features want
# OpenSSL >= 3.2 (Debian 12 has 3.0), so it is built without them, linking the system
# libssl (`dynamic`). Only cargo's registry is used; as root, missing Debian packages are installed.
set -euo pipefail

version=1.5.4
cache=${KMSGW_CACHE_DIR:-$HOME/.cache/kms-gateway}/kryoptic-$version
lib=$cache/libkryoptic_pkcs11.so
# In 1.5.x the token features live in the kryoptic-lib dependency.
features=kryoptic-lib/dynamic,kryoptic-lib/sqlitedb,kryoptic-lib/ecc_min,hash_all,kdf_all,kryoptic-lib/rsa,kryoptic-lib/aes

if [ -f "$lib" ]; then echo "$lib"; exit 0; fi

# Build prerequisites: libclang (bindgen), OpenSSL and SQLite headers, pkg-config; opensc for pkcs11-tool.
missing=()
for pkg in libclang-dev libssl-dev libsqlite3-dev pkg-config opensc; do
  command -v dpkg-query >/dev/null || break   # not Debian: assume the tools are there
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2; exit 1
  fi
  echo "installing ${missing[*]}" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi
command -v cargo >/dev/null || { echo "cargo not found (install Rust via rustup)" >&2; exit 1; }

# Fetch the crate source via a throw-away project that depends on it.
mkdir -p "$cache/fetch/src"
cat > "$cache/fetch/Cargo.toml" <<EOF
[package]
name = "kryoptic-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
kryoptic = { version = "=$version", default-features = false }
EOF
: > "$cache/fetch/src/lib.rs"
echo "fetching kryoptic $version with cargo" >&2
(cd "$cache/fetch" && cargo fetch >&2)
src=$(cd "$cache/fetch" && cargo metadata --format-version 1 |
  grep -o "\"manifest_path\":\"[^\"]*/kryoptic-$version/Cargo.toml\"" | head -n1 | cut -d'"' -f4)
[ -n "$src" ] || { echo "kryoptic $version source not found after cargo fetch" >&2; exit 1; }
src=$(dirname "$src")

# Build a private copy (the registry source is read-only by convention), with its own lock file.
rm -rf "$cache/src"
cp -r "$src" "$cache/src"
echo "building kryoptic $version (takes a few minutes)" >&2
start=$SECONDS
(cd "$cache/src" && cargo build --release --locked -j2 --target-dir "$cache/target" \
   --no-default-features --features "$features" >&2)
built=$(find "$cache/target/release" -maxdepth 1 -name 'lib*.so' | head -n1)
[ -n "$built" ] || { echo "no shared library produced in $cache/target/release" >&2; exit 1; }
cp "$built" "$lib.tmp" && mv "$lib.tmp" "$lib"
rm -rf "$cache/target"   # ~250 MB of build products; only the .so is kept
echo "built $(basename "$built") in $((SECONDS - start))s" >&2
echo "$lib"
