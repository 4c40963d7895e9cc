#!/usr/bin/env bash
# Real clients against one real gateway over real TLS (`make test-clients`):
#   1. pytest (tests/clients) driving Infisical's official Python SDK (`infisicalsdk`),
#      Vault's `hvac`, and the AWS clients: boto3, the AWS CLI and the AWS Encryption SDK;
#      PyKMIP on the KMIP port over mutual TLS (test_kmip.py);
#      the web console (/ui/) driven in headless Chromium by selenium (test_console.py);
#      and the native API's refusals of bodies not sent as JSON or not JSON objects, on
#      every operation of the OpenAPI document, judged by schemathesis' checks
#      (test_native_input.py);
#   2. schemathesis, fuzzing every operation of the gateway's OpenAPI document (served
#      at /api/v1/openapi.json, the file src/api/native/openapi.json) and checking the
#      responses against it.
#
#   scripts/client-tests.sh
#
# The Python packages (pinned in tests/clients/requirements.txt) go in a venv under
# ${XDG_CACHE_HOME:-~/.cache}/kms-gateway/pyenv, made once and remade when the pins change.
# The gateway is target/debug/kms-gateway (built with `cargo build --bin kms-gateway` when
# absent; KMSGW_CLIENT_TESTS_BINARY names another) on a throw-away SoftHSM2 token, a dev
# certificate, a software root key and a SQLite store in a temporary directory, listening
# on a free port of 127.0.0.1 for HTTPS and another for KMIP (client certificates of a
# throw-away client CA); it is stopped on exit. As root on Debian, missing packages
# are installed; otherwise they are named. Exits non-zero if anything fails.
# KMSGW_CLIENT_TESTS_MAX_TIME (seconds, default 100) is the schemathesis run's time budget,
# KMSGW_CLIENT_TESTS_SEED (default 11) its seed;
# KMSGW_CLIENT_TESTS_KEEP=1 keeps the temporary directory (logs, store) for a look.
# KMSGW_CONSOLE_SCREENSHOTS=DIR saves a PNG of each console page in DIR (docs/console/ comes from
# such a run); KMSGW_CONSOLE_ARTIFACTS=DIR is where a failed console step leaves its screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { echo "client-tests: $*" >&2; }
die() { say "$*"; exit 1; }

# 1. Debian packages: Python with venv, OpenSSL's command line, SoftHSM2, curl, and
#    Chromium with its WebDriver for the console tests (no other browser is used).
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v openssl >/dev/null || need+=(openssl)
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v curl >/dev/null || need+=(curl ca-certificates)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    die "missing packages: ${need[*]} (Debian: apt-get install -y ${need[*]})"
  fi
  say "installing Debian packages: ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 \
    || die "could not install the Debian packages ${need[*]}: the client tests (the console's among them) cannot run"
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null \
  || die "chromium and chromedriver (Debian: chromium, chromium-driver) are needed by the console tests and are missing" 

# 2. The venv, reused while the pins and the Python (version and path) are the same.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kms-gateway
venv=$cache/pyenv
requirements=$root/tests/clients/requirements.txt
stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0], sys.executable)')"
if [ "$(cat "$venv/.kmsgw-stamp" 2>/dev/null)" != "$stamp" ]; then
  say "making the Python venv in $venv (once)"
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  echo "$stamp" > "$venv/.kmsgw-stamp"
fi
py=$venv/bin/python

# 3. The binary.
bin=${KMSGW_CLIENT_TESTS_BINARY:-$root/target/debug/kms-gateway}
if [ -n "${KMSGW_CLIENT_TESTS_BINARY:-}" ]; then
  [ -x "$bin" ] || die "KMSGW_CLIENT_TESTS_BINARY=$bin is not an executable"
else
  # Up to date with the tree (a no-op right after `cargo nextest run`).
  cargo build --bin kms-gateway >&2
fi

# 4. One gateway for every client test, its state in a temporary directory.
work=$(mktemp -d "${TMPDIR:-/tmp}/kmsgw-clients.XXXXXX")
gw=$work/gw
gw_pid=""
ready=""
status=1
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local alive=""
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
    alive=yes
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  # A gateway that did not start, or died on the way: its log says why.
  if [ "$status" -ne 0 ] && { [ -z "$ready" ] || [ -z "$alive" ]; } && [ -f "$gw/gateway.log" ]; then
    say "end of the gateway's log:"
    tail -n 25 "$gw/gateway.log" >&2 || true
  fi
  if [ -n "${KMSGW_CLIENT_TESTS_KEEP:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Settings of the caller's shell do not leak into the gateway.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(KMSGW__|HSM_|PKCS11_LIB_PATH$|SOFTHSM2_CONF$|ROOT_ENCRYPTION_KEY|CUSTOMER_FRAGMENTS_FILE$)' || true)

mkdir -p "$work/hsm" "$gw/data"
TOKEN_LABEL=kmsgw-clients USER_PIN=$(head -c 9 /dev/urandom | base64 | tr -d '/+=') \
  scripts/hsm-token.sh softhsm "$work/hsm" > "$work/hsm/env"
# shellcheck disable=SC1091
source "$work/hsm/env"
unset HSM_SLOT HSM_SO_PIN
scripts/dev-cert.sh "$gw"
# KMIP's client certificates (EC P-256, clientAuth) in $gw/kmip, NAME.pem and NAME.key: a
# client CA of their own (KMSGW__TLS__CLIENT_CA_FILE) signs CN=kmip-a and CN=kmip-b (the
# tests give them identities) and CN=kmip-unknown (no identity); kmip-untrusted claims
# CN=kmip-a but is signed by another CA, which the gateway does not trust.
kmip_certs=$gw/kmip
mkdir -p "$kmip_certs"
(
  cd "$kmip_certs"
  umask 077
  new_ca() {  # FILE SUBJECT
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -subj "/CN=$2" -keyout "$1.key" -out "$1.pem" 2>/dev/null
  }
  new_client() {  # FILE COMMON-NAME CA-FILE
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 30 \
      -extfile client.ext -out "$1.pem" 2>/dev/null
    rm -f "$1.csr"
  }
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
  new_ca clients-ca "KMS Gateway KMIP clients CA"
  new_ca untrusted-ca "Untrusted CA"
  for name in kmip-a kmip-b kmip-unknown; do new_client "$name" "$name" clients-ca; done
  new_client kmip-untrusted kmip-a untrusted-ca
  rm -f client.ext ./*.srl
) || die "could not make the KMIP client certificates"
(umask 077; head -c 32 /dev/urandom | base64 > "$gw/root.key")
# One customer fragment, so that the console's admin page and Add Key dialog list one.
"$bin" gen-customer-fragment --name clients --type hsm_wrapped --hsm-key-label clients-cf \
  --output "$gw/customer_fragments.json" > /dev/null
ca=$gw/ca.pem

# As tests/common/gateway.rs starts it: port 0, and stdout names the addresses (the KMIP
# port's `listening on kmip://HOST:PORT` before the HTTPS port's line). Every client runs
# from 127.0.0.1 and schemathesis sends unauthenticated requests on purpose (expecting
# 401, not 429): the bound on refused requests per address is lifted here (it is tested in
# tests/audit.rs).
env RUST_LOG=info \
  KMSGW__AUTH__MAX_FAILURES_PER_ADDRESS=100000 \
  KMSGW__SERVER__LISTEN=127.0.0.1:0 \
  KMSGW__TLS__CERT_FILE="$gw/cert.pem" \
  KMSGW__TLS__KEY_FILE="$gw/key.pem" \
  KMSGW__TLS__CLIENT_CA_FILE="$kmip_certs/clients-ca.pem" \
  KMSGW__KMIP__LISTEN=127.0.0.1:0 \
  KMSGW__STORE__URL="sqlite://$gw/data/kms-gateway.db" \
  KMSGW__XKS__ENABLED=true \
  KMSGW__XKS__URI_PATH_PREFIX=/example/xks \
  ROOT_ENCRYPTION_KEY_FILE="$gw/root.key" \
  HSM_KEY_LABEL=kmsgw-clients-root \
  CUSTOMER_FRAGMENTS_FILE="$gw/customer_fragments.json" \
  "$bin" serve > "$gw/stdout" 2> "$gw/gateway.log" &
gw_pid=$!
base=""
for _ in $(seq 1 300); do
  base=$(sed -n 's/^listening on \(https:\/\/.*\)$/\1/p' "$gw/stdout" | head -n 1)
  [ -n "$base" ] && break
  kill -0 "$gw_pid" 2>/dev/null || die "the gateway exited before listening"
  sleep 0.2
done
[ -n "$base" ] || die "the gateway did not say where it listens within 60 s"
kmip=$(sed -n 's/^listening on kmip:\/\/\(.*\)$/\1/p' "$gw/stdout" | head -n 1)
[ -n "$kmip" ] || die "the gateway did not say where it serves KMIP (listening on kmip://...)"
for _ in $(seq 1 300); do
  if curl -fsS --cacert "$ca" -o /dev/null "$base/readyz" 2>/dev/null; then ready=yes; break; fi
  kill -0 "$gw_pid" 2>/dev/null || die "the gateway exited before it was ready"
  sleep 0.2
done
[ -n "$ready" ] || die "$base/readyz did not answer 200 within 60 s"
say "gateway $("$bin" --version 2>/dev/null || echo "$bin") at $base, KMIP at $kmip"

export KMSGW_CLIENT_BASE_URL=$base
export KMSGW_CLIENT_CA_FILE=$ca
export KMSGW_CLIENT_BOOTSTRAP_TOKEN_FILE=$gw/data/bootstrap-token
export KMSGW_CLIENT_KMIP_HOST=${kmip%:*}
export KMSGW_CLIENT_KMIP_PORT=${kmip##*:}
export KMSGW_CLIENT_KMIP_CERTS=$kmip_certs
# Infisical's SDK has no CA parameter: it verifies with requests' defaults, which take this.
export REQUESTS_CA_BUNDLE=$ca
export PYTHONDONTWRITEBYTECODE=1
# The AWS clients get their endpoint, credentials and CA from each test, never from the
# caller's profile or environment.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^AWS_' || true)

# 5. The client tests (Infisical SDK, hvac, AWS clients, PyKMIP, the console).
set +e
(cd "$root/tests/clients" && "$py" -m pytest -q --color=no) 2>&1 | tee "$work/pytest.log"
pytest_rc=${PIPESTATUS[0]}
set -e

# 6. schemathesis against the document the gateway serves, as the bootstrap administrator,
#    on the objects schemathesis_objects.py makes (see tests/clients/schemathesis.toml).
#    No stateful phase: chained calls would revoke or re-key the identities it runs as.
#    One worker: CPython 3.11's ast.parse, which hypothesis calls, is not thread-safe.
if ! "$py" tests/clients/schemathesis_objects.py > "$work/st.env"; then
  st_rc=1
  echo "schemathesis: could not make its objects on the gateway" | tee "$work/st.log"
else
  # shellcheck disable=SC1091
  source "$work/st.env"
  KMSGW_ST_BEARER=$(cat "$KMSGW_CLIENT_BOOTSTRAP_TOKEN_FILE")
  export KMSGW_ST_BEARER
  set +e
  (cd "$work" && "$venv/bin/schemathesis" --config-file "$root/tests/clients/schemathesis.toml" run \
      "$base/api/v1/openapi.json" \
      --url "$base/" \
      --tls-verify "$ca" \
      --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
      --phases examples,coverage,fuzzing \
      --max-examples 15 \
      --max-time "${KMSGW_CLIENT_TESTS_MAX_TIME:-100}" \
      --request-timeout 30 \
      --workers 1 \
      --seed "${KMSGW_CLIENT_TESTS_SEED:-11}" \
      --no-color) 2>&1 | tee "$work/st.log"
  st_rc=${PIPESTATUS[0]}
  set -e
fi

echo
echo "client-tests summary:"
echo "  pytest:       $(grep -E '(passed|failed|error|no tests ran)' "$work/pytest.log" | tail -n 1 | sed 's/^=* *//; s/ *=*$//')"
echo "  schemathesis: $(grep -A1 '^Test cases:' "$work/st.log" | tail -n 1 | sed 's/^ *//')" \
     "($(grep -E '^=+ .* =+$' "$work/st.log" | tail -n 1 | sed 's/^=* *//; s/ *=*$//'))"
if [ "$pytest_rc" -eq 0 ] && [ "$st_rc" -eq 0 ]; then
  status=0
else
  say "FAILED (pytest exit $pytest_rc, schemathesis exit $st_rc)"
fi
exit "$status"
