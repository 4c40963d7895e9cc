#!/usr/bin/env bash
# Install what building and testing KMS Gateway needs on Debian, when it is missing:
# SoftHSM2 (the test token), OpenSSL's command line (independent signature checks and the
# dev certificate), OpenSC's pkcs11-tool, the headers the Kryoptic module builds against,
# PostgreSQL (the tests of the PostgreSQL key store start throw-away clusters with
# scripts/pg-cluster.sh), and cargo-nextest (one process per test, so each test owns its
# PKCS#11 token).
# As root it installs; otherwise it names what is missing and fails.
set -euo pipefail

packages=(softhsm2 openssl opensc jq postgresql libclang-dev libssl-dev libsqlite3-dev pkg-config curl ca-certificates)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
command -v cargo >/dev/null || { echo "cargo is not installed: install Rust with rustup" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (once)" >&2
  cargo install cargo-nextest --locked >&2
fi
