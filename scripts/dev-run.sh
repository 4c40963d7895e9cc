#!/usr/bin/env bash
# `make run`: a development gateway on https://127.0.0.1:8000 with all its state under
# var/ (git-ignored): a SoftHSM2 token, a dev CA and server certificate, a root key, an
# hsm_wrapped customer fragment (the default for new keys) and a SQLite store.
# A second run reuses the same state, so keys made before keep working.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
var=$root/var
mkdir -p "$var"
chmod 700 "$var"

echo "building the gateway (release)..." >&2
cargo build --release --bin kms-gateway >&2
bin=$root/target/release/kms-gateway

# 1. The token: made once, its environment kept in var/hsm/env.
if [ ! -f "$var/hsm/env" ]; then
  rm -rf "$var/hsm"
  mkdir -p "$var/hsm"
  TOKEN_LABEL=kmsgw-dev USER_PIN=$(head -c 9 /dev/urandom | base64 | tr -d '/+=') \
    scripts/hsm-token.sh softhsm "$var/hsm" | grep -v HSM_SLOT > "$var/hsm/env.tmp"
  mv "$var/hsm/env.tmp" "$var/hsm/env"
  chmod 600 "$var/hsm/env"
fi
# shellcheck disable=SC1091
source "$var/hsm/env"
unset HSM_SO_PIN
export HSM_KEY_LABEL=kmsgw-dev-root

# 2. TLS: a dev CA and a server certificate for localhost / 127.0.0.1.
scripts/dev-cert.sh "$var/tls"

# 3. The software root key (ROOT_ENCRYPTION_KEY), base64 of 32 random bytes.
if [ ! -f "$var/root.key" ]; then
  (umask 077; head -c 32 /dev/urandom | base64 > "$var/root.key")
fi

# 4. One hsm_wrapped customer fragment, made by the CLI; it is the default for new keys.
export CUSTOMER_FRAGMENTS_FILE=$var/fragments/customer_fragments.json
if [ ! -f "$var/fragments/default-id" ]; then
  mkdir -p "$var/fragments"
  "$bin" gen-customer-fragment --name dev --type hsm_wrapped --hsm-key-label dev-fragment \
    --description "make run" --output "$CUSTOMER_FRAGMENTS_FILE" > "$var/fragments/default-id"
fi

export KMSGW__FRAGMENTS__DEFAULT=$(cat "$var/fragments/default-id")
export ROOT_ENCRYPTION_KEY_FILE=$var/root.key
export KMSGW__TLS__CERT_FILE=$var/tls/cert.pem
export KMSGW__TLS__KEY_FILE=$var/tls/key.pem
export KMSGW__STORE__URL=sqlite://$var/data/kms-gateway.db
export KMSGW__SERVER__LISTEN=${KMSGW__SERVER__LISTEN:-127.0.0.1:8000}

cat >&2 <<MSG

KMS Gateway (dev) — state in var/, token file var/data/bootstrap-token (made at first start).
Try, in another shell:

  TOKEN=\$(cat var/data/bootstrap-token); CA="--cacert var/tls/ca.pem"; API=https://127.0.0.1:8000/api/v1
  PROJECT=\$(curl -s \$CA -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
      -d '{"name":"demo"}' \$API/projects | jq -r .project.id)
  KEY=\$(curl -s \$CA -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
      -d "{\"projectId\":\"\$PROJECT\",\"name\":\"demo-key\"}" \$API/kms/keys | jq -r .key.id)
  curl -s \$CA -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
      -d '{"plaintext":"aGVsbG8="}' \$API/kms/keys/\$KEY/encrypt

(See README.md for the whole walk-through.) Stop with Ctrl-C.

MSG
exec "$bin" serve
