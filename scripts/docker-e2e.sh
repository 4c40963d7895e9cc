#!/usr/bin/env bash
# End-to-end test of the container image, on a machine with a Docker engine and no image
# registry (see docs/DEPLOY.md, "Building the image without a registry").
#
#   scripts/docker-e2e.sh          # base image (cached), image, then the whole test
#   scripts/docker-e2e.sh base     # only make (or reuse) the base image
#
# 1. The base image `debian:bookworm-slim` is made once with `debootstrap --variant=minbase`
#    from the Debian mirror this machine's apt is configured with, and `docker import`ed
#    under that name; the root file system is also kept as a tarball in
#    ~/.cache/kms-gateway, so a pruned engine gets it back without a new debootstrap.
# 2. The runtime image is built from deploy/docker/Dockerfile (`--target runtime-prebuilt`)
#    with target/release/kms-gateway (`cargo build --release --bin kms-gateway`; set
#    KMSGW_E2E_BINARY to test another binary).
# 3. A SoftHSM2 token is made with scripts/hsm-token.sh and laid out as a vendor folder
#    (lib/libsofthsm2.so, softhsm2.conf, tokens/) mounted at /opt/hsm; PIN and root key come
#    in as mounted secret files, TLS from scripts/dev-cert.sh; the fragment is made by the
#    CLI inside the container. The gateway runs non-root with a read-only root file system,
#    and the API is driven with curl over HTTPS; signatures are checked with openssl.
#
# Without a Docker engine it prints `SKIPPED: no Docker engine` and exits 0.
# The last line is `docker-e2e: N passed, M failed`; any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

BASE_IMAGE=${KMSGW_E2E_BASE_IMAGE:-debian:bookworm-slim}
IMAGE=${KMSGW_E2E_IMAGE:-kms-gateway:e2e-$$}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kms-gateway
GW_UID=10001
mode=${1:-all}
case "$mode" in all|base) ;; *) echo "usage: $0 [base]" >&2; exit 2 ;; esac

say() { echo "docker-e2e: $*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "SKIPPED: no Docker engine (docker info failed); the container end-to-end test did not run"
  exit 0
fi

# The first Debian mirror of apt's configuration (deb822 *.sources first, then one-line
# lists); DEBIAN_MIRROR overrides it.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return 0; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && uris != "" &&
            suites ~ /(^|[ \t])(bookworm|trixie|bullseye|stable|oldstable|testing|unstable|sid)([ \t]|$)/) {
          split(uris, u, /[ \t]+/); print u[1]; found = 1; exit
        }
        types = ""; uris = ""; suites = ""; enabled = "yes"
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
      key == "types:" { types = $0 }
      key == "uris:" { uris = $0 }
      key == "suites:" { suites = $0 }
      key == "enabled:" { enabled = tolower($0) }
      END { if (!found) flush() }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return 0; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i+1) ~ /^(bookworm|trixie|bullseye|stable|oldstable|testing|unstable|sid)$/) { print $i; exit }
      }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return 0; fi
  done
  return 1
}

# Installs Debian packages when missing (as root), or names them and fails.
need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if ! is_root; then
    say "missing Debian packages: ${missing[*]} (install them with: sudo apt-get install -y ${missing[*]})"
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The base image: docker import of a debootstrapped bookworm minbase (cached twice: as the
# image itself and as a tarball of the root file system). The packages the runtime stage
# would otherwise install from the network are included, so `docker build` needs none.
ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE present (cached)"
    return 0
  fi
  local tarball=$CACHE/debian-bookworm-minbase.tar
  if [ ! -s "$tarball" ]; then
    is_root || { say "debootstrap needs root to make the base image $BASE_IMAGE"; exit 1; }
    need_packages debootstrap debian-archive-keyring
    local mirror rootfs start
    mirror=$(debian_mirror) || { say "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR"; exit 1; }
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    start=$SECONDS
    say "debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
    if ! debootstrap --variant=minbase --include=ca-certificates,curl,libssl3 \
        bookworm "$rootfs" "$mirror" > "$CACHE/debootstrap.log" 2>&1; then
      tail -n 30 "$CACHE/debootstrap.log" >&2
      rm -rf "$rootfs"
      say "debootstrap failed (log: $CACHE/debootstrap.log)"
      exit 1
    fi
    # Slim it the way the -slim images are: no package lists, caches, docs or locales.
    chroot "$rootfs" apt-get clean >/dev/null 2>&1 || true
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
           "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    say "debootstrap done in $((SECONDS - start)) s ($(du -h "$tarball" | cut -f1))"
  fi
  docker import -c 'CMD ["bash"]' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  say "imported $tarball as $BASE_IMAGE"
}

start_all=$SECONDS
ensure_base_image
[ "$mode" = base ] && exit 0

need_packages curl openssl jq softhsm2 ca-certificates

# ---------------------------------------------------------------------------------------
# Checks, bookkeeping and clean-up.
pass=0
fail=0
work=$(mktemp -d "${TMPDIR:-/tmp}/kmsgw-docker-e2e.XXXXXX")
run_id=kmsgw-e2e-$$
cname=$run_id-gateway
data_vol=$run_id-data
frag_vol=$run_id-fragments
image_built=0

ok() { pass=$((pass + 1)); echo "ok   $pass - $*"; }
summary() { echo "docker-e2e: $pass passed, $fail failed"; }
die() {
  fail=$((fail + 1))
  echo "FAIL - $*"
  if docker container inspect "$cname" >/dev/null 2>&1; then
    echo "--- last lines of the gateway's log ---"
    docker logs --tail 40 "$cname" 2>&1 | sed 's/^/    /'
  fi
  if [ -s "$work/resp" ]; then echo "--- last response body ---"; sed 's/^/    /' "$work/resp"; echo; fi
  summary
  exit 1
}

compose=()
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose); fi
compose_up=0

cleanup() {
  set +e
  if [ "$compose_up" = 1 ]; then
    "${compose[@]}" -p "$run_id" -f deploy/docker/compose.yaml down -v --remove-orphans >/dev/null 2>&1
  fi
  docker rm -f "$cname" >/dev/null 2>&1
  docker volume rm -f "$data_vol" "$frag_vol" >/dev/null 2>&1
  # Files under $work were given to the gateway's uid; take them back before removing.
  if [ "$image_built" = 1 ]; then
    docker run --rm --user 0 --entrypoint chown -v "$work:/w" "$IMAGE" -R "$(id -u):$(id -g)" /w >/dev/null 2>&1
  fi
  rm -rf "$work"
  if [ -z "${KMSGW_E2E_KEEP_IMAGE:-}" ] && [ "$image_built" = 1 ]; then
    docker image rm "$IMAGE" >/dev/null 2>&1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok "base image $BASE_IMAGE"

# ---------------------------------------------------------------------------------------
# The runtime image, from a binary built outside the image.
binary=${KMSGW_E2E_BINARY:-}
if [ -z "$binary" ]; then
  say "cargo build --release --bin kms-gateway"
  cargo build --release --bin kms-gateway >&2
  binary=$root/target/release/kms-gateway
fi
[ -x "$binary" ] || die "no gateway binary at $binary"
start=$SECONDS
mkdir -p "$work/context/target/release"
cp "$binary" "$work/context/target/release/kms-gateway"
cp deploy/docker/Dockerfile "$work/context/Dockerfile"
if ! docker build --target runtime-prebuilt --build-arg BASE_IMAGE="$BASE_IMAGE" \
     -t "$IMAGE" "$work/context" > "$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log"
  die "docker build --target runtime-prebuilt"
fi
image_built=1
rm -rf "$work/context"
say "image built in $((SECONDS - start)) s"

docker image inspect "$IMAGE" | jq -e '.[0].Config
  | (.User | startswith("10001"))
    and (.ExposedPorts | has("8000/tcp"))
    and ((.Volumes // {}) | has("/var/lib/kms-gateway") and has("/etc/kms-gateway/fragments") and has("/etc/kms-gateway/tls"))
    and (.Entrypoint == ["/usr/local/bin/kms-gateway"]) and (.Cmd == ["serve"])
    and ((.Healthcheck.Test // []) | join(" ") | test("/readyz"))' >/dev/null \
  || die "image metadata (user, port, volumes, entrypoint, healthcheck): $(docker image inspect "$IMAGE" | jq -c '.[0].Config')"
ok "image $IMAGE: user 10001, port 8000, volumes, entrypoint kms-gateway serve, HEALTHCHECK on /readyz"

# The binary's shared libraries (glibc and friends) exist in the image: a binary built on a
# newer distribution than the base would fail here, with the names of what is missing.
libs=$(docker run --rm --entrypoint ldd "$IMAGE" /usr/local/bin/kms-gateway 2>&1) \
  || die "ldd of the gateway in the image: $libs"
if grep -q 'not found' <<< "$libs"; then die "libraries missing in the image: $(grep 'not found' <<< "$libs")"; fi
ok "every shared library the gateway links against is in the image"

# ---------------------------------------------------------------------------------------
# The HSM "vendor folder": SoftHSM2's library, its configuration and its token directory,
# with the configuration pointing at the path inside the container.
hsm=$work/hsm
pin=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
TOKEN_LABEL=kmsgw-docker USER_PIN=$pin scripts/hsm-token.sh softhsm "$hsm" > "$work/token.env" \
  || die "scripts/hsm-token.sh softhsm"
host_lib=$(sed -n 's/^export PKCS11_LIB_PATH=//p' "$work/token.env")
mkdir -p "$hsm/lib"
cp "$host_lib" "$hsm/lib/libsofthsm2.so"
printf 'directories.tokendir = /opt/hsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
  > "$hsm/softhsm2.conf"

# Secrets as files (as Kubernetes Secrets or Docker secrets would mount them), and TLS.
mkdir -p "$work/secrets"
printf '%s\n' "$pin" > "$work/secrets/hsm-pin"
root_key=$(head -c 32 /dev/urandom | base64)
printf '%s\n' "$root_key" > "$work/secrets/root-key"
scripts/dev-cert.sh "$work/tls-host"
mkdir -p "$work/tls"
cp "$work/tls-host/cert.pem" "$work/tls-host/key.pem" "$work/tls"
chmod 0600 "$work/secrets/"* "$work/tls/key.pem"
libs=$(docker run --rm --entrypoint ldd -v "$hsm:/opt/hsm:ro" "$IMAGE" /opt/hsm/lib/libsofthsm2.so 2>&1) \
  || die "ldd of libsofthsm2.so in the image: $libs"
if grep -q 'not found' <<< "$libs"; then die "libraries SoftHSM2 needs are missing in the image: $(grep 'not found' <<< "$libs")"; fi
ca=$work/tls-host/ca.pem

# The gateway's uid must own what it reads and writes (the token directory above all);
# a root container does the chown, so this works for a non-root caller too.
docker run --rm --user 0 --entrypoint chown -v "$work:/w" "$IMAGE" \
  -R "$GW_UID:$GW_UID" /w/hsm /w/secrets /w/tls || die "chown of the mounted folders to $GW_UID"

# What every container of this test gets: the hardening a production run should have, the
# HSM folder, the secret files and the fragment volume.
common=(
  --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges
  -v "$hsm:/opt/hsm"
  -e PKCS11_LIB_PATH=/opt/hsm/lib/libsofthsm2.so
  -e SOFTHSM2_CONF=/opt/hsm/softhsm2.conf
  -e HSM_TOKEN_LABEL=kmsgw-docker
  -e HSM_PIN_FILE=/run/secrets/hsm-pin
  -e HSM_KEY_LABEL=kmsgw-docker-root
  -v "$work/secrets:/run/secrets:ro"
  -v "$frag_vol:/etc/kms-gateway/fragments"
)
docker volume create "$data_vol" >/dev/null
docker volume create "$frag_vol" >/dev/null

# ---------------------------------------------------------------------------------------
# A customer fragment, made by the CLI inside the container into the fragment volume.
fragment=$(docker run --rm "${common[@]}" "$IMAGE" gen-customer-fragment --name docker-e2e \
  --type hsm_wrapped --hsm-key-label docker-e2e-cf --description "docker e2e" 2> "$work/frag.err") \
  || { cat "$work/frag.err"; die "gen-customer-fragment inside the container"; }
fragment=$(printf '%s' "$fragment" | tr -d '[:space:]')
[[ "$fragment" == cf-* ]] || die "gen-customer-fragment printed '$fragment', not a fragment id"
stat_line=$(docker run --rm -v "$frag_vol:/f:ro" --entrypoint stat "$IMAGE" -c '%a %u' /f/customer_fragments.json) \
  || die "no fragment file in the fragment volume"
[ "$stat_line" = "600 $GW_UID" ] || die "fragment file mode/owner is '$stat_line', want '600 $GW_UID'"
ok "gen-customer-fragment in the container: $fragment (file 0600, owned by $GW_UID)"

# ---------------------------------------------------------------------------------------
# The gateway.
docker run -d --name "$cname" "${common[@]}" \
  -v "$data_vol:/var/lib/kms-gateway" \
  -v "$work/tls:/etc/kms-gateway/tls:ro" \
  -e ROOT_ENCRYPTION_KEY_FILE=/run/secrets/root-key \
  --health-interval 2s --health-timeout 5s \
  -p 127.0.0.1::8000 "$IMAGE" >/dev/null || die "docker run of the gateway"

port=""
wait_ready() {
  local deadline=$((SECONDS + 90)) code
  port=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(docker inspect -f '{{.State.Running}}' "$cname" 2>/dev/null)" = true ] \
      || die "the gateway container stopped"
    if [ -z "$port" ]; then
      port=$(docker port "$cname" 8000/tcp 2>/dev/null | sed -n 's/^127\.0\.0\.1://p' | head -n 1)
    fi
    if [ -n "$port" ]; then
      code=$(curl -s -o "$work/resp" -w '%{http_code}' --max-time 5 --cacert "$ca" \
        "https://127.0.0.1:$port/readyz" || true)
      [ "$code" = 200 ] && return 0
    fi
    sleep 0.5
  done
  die "/readyz did not answer 200 within 90 s"
}
start=$SECONDS
wait_ready
ok "/readyz 200 over HTTPS (verified against the dev CA) after $((SECONDS - start)) s"

code=$(curl -s -o "$work/resp" -w '%{http_code}' --cacert "$ca" "https://127.0.0.1:$port/healthz" || true)
[ "$code" = 200 ] || die "/healthz answered $code"
ok "/healthz 200"

uid_in=$(docker exec "$cname" stat -c %u /proc/1) || die "docker exec stat"
[ "$uid_in" = "$GW_UID" ] || die "the gateway runs as uid '$uid_in', want $GW_UID"
if docker exec "$cname" touch /usr/local/bin/probe 2>/dev/null; then die "the root file system is writable"; fi
ok "the gateway process runs as uid $GW_UID on a read-only root file system"

token=$(docker exec "$cname" cat /var/lib/kms-gateway/bootstrap-token) \
  || die "no bootstrap token in the data volume"
[ -n "$token" ] || die "empty bootstrap token"
ok "bootstrap admin token written to the data volume"

# api METHOD PATH [BODY]: response body in $work/resp, status in $status.
status=""
api() {
  local args=(-sS --max-time 30 --cacert "$ca" -H "Authorization: Bearer $token"
              -H 'content-type: application/json' -X "$1" -o "$work/resp" -w '%{http_code}')
  [ $# -ge 3 ] && args+=(--data-binary "$3")
  status=$(curl "${args[@]}" "https://127.0.0.1:$port$2") || status=000
}
expect() { # STATUS WHAT
  [ "$status" = "$1" ] || die "$2: HTTP $status, want $1"
}

api POST /api/v1/projects '{"name":"docker-e2e"}'
expect 200 "create project"
project=$(jq -r .project.id "$work/resp")
[ -n "$project" ] && [ "$project" != null ] || die "create project: no id"
ok "create project $project"

api POST /api/v1/kms/keys "{\"projectId\":\"$project\",\"name\":\"orders\",\"keyUsage\":\"encrypt-decrypt\",\"encryptionAlgorithm\":\"aes-256-gcm\",\"customerFragmentId\":\"$fragment\"}"
expect 200 "create aes-256-gcm key"
aes=$(jq -r .key.id "$work/resp")
bound=$(jq -r .key.customerFragmentId "$work/resp")
[ "$bound" = "$fragment" ] || die "the key is bound to '$bound', want $fragment"
ok "create aes-256-gcm key $aes bound to $fragment"

plaintext="card 4111 1111 1111 1111 — docker e2e"
pt_b64=$(printf '%s' "$plaintext" | base64 -w0)
api POST "/api/v1/kms/keys/$aes/encrypt" "{\"plaintext\":\"$pt_b64\",\"encryptionContext\":{\"tenant\":\"acme\"}}"
expect 200 "encrypt"
ciphertext=$(jq -r .ciphertext "$work/resp")
[ -n "$ciphertext" ] && [ "$ciphertext" != null ] || die "encrypt: no ciphertext"
ok "encrypt"

decrypt_check() { # WHAT
  api POST "/api/v1/kms/keys/$aes/decrypt" "{\"ciphertext\":\"$ciphertext\",\"encryptionContext\":{\"tenant\":\"acme\"}}"
  expect 200 "$1"
  [ "$(jq -r .plaintext "$work/resp" | base64 -d)" = "$plaintext" ] || die "$1: wrong plaintext"
}
decrypt_check "decrypt"
ok "decrypt gives the plaintext back"

api POST "/api/v1/kms/keys/$aes/decrypt" "{\"ciphertext\":\"$ciphertext\",\"encryptionContext\":{\"tenant\":\"other\"}}"
[ "${status:0:1}" = 4 ] || die "decrypt with the wrong encryption context: HTTP $status, want 4xx"
ok "decrypt with the wrong encryption context is refused ($status)"

api POST /api/v1/kms/keys "{\"projectId\":\"$project\",\"name\":\"release-signing\",\"keyUsage\":\"sign-verify\",\"encryptionAlgorithm\":\"ECC_NIST_P256\"}"
expect 200 "create ECC_NIST_P256 key"
ecc=$(jq -r .key.id "$work/resp")
ok "create ECC_NIST_P256 key $ecc"

printf 'release 1.0 built in a container' > "$work/msg.txt"
msg_b64=$(base64 -w0 "$work/msg.txt")
api POST "/api/v1/kms/keys/$ecc/sign" "{\"data\":\"$msg_b64\",\"signingAlgorithm\":\"ECDSA_SHA_256\"}"
expect 200 "sign"
signature=$(jq -r .signature "$work/resp")
ok "sign (ECDSA_SHA_256)"

api GET "/api/v1/kms/keys/$ecc/public-key"
expect 200 "public key"
jq -r .publicKey "$work/resp" | base64 -d > "$work/pub.der"
openssl pkey -pubin -inform DER -in "$work/pub.der" -out "$work/pub.pem" 2>/dev/null || die "public key is not DER SPKI"
printf '%s' "$signature" | base64 -d > "$work/sig.bin"
openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/sig.bin" "$work/msg.txt" >/dev/null 2>&1 \
  || die "openssl dgst -verify rejects the signature"
ok "openssl dgst -sha256 -verify accepts the signature"

api POST "/api/v1/kms/keys/$ecc/verify" "{\"data\":\"$msg_b64\",\"signature\":\"$signature\",\"signingAlgorithm\":\"ECDSA_SHA_256\"}"
expect 200 "verify"
[ "$(jq -r .signatureValid "$work/resp")" = true ] || die "the gateway's verify says the signature is invalid"
ok "verify through the API: signatureValid true"

# Docker's own view: the image's HEALTHCHECK (curl on /readyz inside the container).
deadline=$((SECONDS + 60))
while :; do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$cname")
  [ "$health" = healthy ] && break
  [ "$SECONDS" -lt "$deadline" ] || die "HEALTHCHECK status is '$health' after 60 s"
  sleep 1
done
ok "HEALTHCHECK reports healthy"

docker exec "$cname" kms-gateway hsm check > "$work/hsm-check.log" 2>&1 \
  || { sed 's/^/    /' "$work/hsm-check.log"; die "kms-gateway hsm check inside the running container"; }
slots=$(docker exec "$cname" kms-gateway hsm list-slots 2>&1) || true
grep -q kmsgw-docker <<< "$slots" || die "kms-gateway hsm list-slots does not show the token: $slots"
ok "kms-gateway hsm check and hsm list-slots inside the running container"

# ---------------------------------------------------------------------------------------
# Restart: the same data volume, token and fragment; the old ciphertext still decrypts.
start=$SECONDS
docker restart -t 20 "$cname" >/dev/null || die "docker restart"
stop_s=$((SECONDS - start))
# As PID 1 the gateway must act on SIGTERM itself; otherwise Docker waits the 20 s and kills it.
[ "$stop_s" -lt 15 ] || die "docker restart took $stop_s s: SIGTERM did not stop the gateway"
wait_ready
ok "stopped on SIGTERM and ready again after docker restart ($((SECONDS - start)) s)"

decrypt_check "decrypt after restart"
ok "the ciphertext made before the restart still decrypts"

api GET "/api/v1/kms/keys/$ecc/public-key"
expect 200 "public key after restart"
jq -r .publicKey "$work/resp" | base64 -d | cmp -s - "$work/pub.der" || die "the ECC public key changed across the restart"
ok "the ECC key is the same after the restart"

# Nothing secret in the container's log.
docker logs "$cname" > "$work/gateway.log" 2>&1
for secret in "$pin" "$root_key" "$token" "$plaintext"; do
  if grep -qF -- "$secret" "$work/gateway.log"; then die "a secret appears in the gateway's log"; fi
done
ok "the gateway's log holds no PIN, root key, token or plaintext"

# ---------------------------------------------------------------------------------------
# deploy/docker/compose.yaml, on the same HSM folder, secrets and TLS (the gateway above is
# removed first: one gateway per token here), with its own volumes.
if [ "${#compose[@]}" -gt 0 ]; then
  docker rm -f "$cname" >/dev/null
  export KMSGW_HSM_DIR=$hsm KMSGW_TLS_DIR=$work/tls KMSGW_SECRETS_DIR=$work/secrets \
         KMSGW_IMAGE=$IMAGE KMSGW_TOKEN_LABEL=kmsgw-docker KMSGW_PUBLISH=127.0.0.1:0
  "${compose[@]}" -p "$run_id" -f deploy/docker/compose.yaml config -q \
    || die "deploy/docker/compose.yaml does not validate"
  "${compose[@]}" -p "$run_id" -f deploy/docker/compose.yaml up -d --no-build > "$work/compose.log" 2>&1 \
    || { cat "$work/compose.log"; die "compose up"; }
  compose_up=1
  deadline=$((SECONDS + 60))
  while :; do
    cport=$("${compose[@]}" -p "$run_id" -f deploy/docker/compose.yaml port kms-gateway 8000 2>/dev/null \
      | sed -n 's/^127\.0\.0\.1://p')
    if [ -n "$cport" ] && [ "$(curl -s -o "$work/resp" -w '%{http_code}' --max-time 5 --cacert "$ca" \
         "https://127.0.0.1:$cport/readyz" || true)" = 200 ]; then break; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      "${compose[@]}" -p "$run_id" -f deploy/docker/compose.yaml logs --tail 30 2>&1 | sed 's/^/    /'
      die "the compose gateway did not become ready within 60 s"
    fi
    sleep 0.5
  done
  ok "deploy/docker/compose.yaml: the gateway comes up ready on the same HSM folder"
  # The two-gateway example needs a PostgreSQL image, which a machine without a registry
  # does not have: it is checked for validity here, and the same topology runs in
  # tests/cluster.rs with processes.
  for f in db-password bootstrap-token; do [ -f "$work/secrets/$f" ] || echo placeholder > "$work/secrets/$f"; done
  "${compose[@]}" -p "$run_id-ha" -f deploy/docker/compose.ha.yaml config -q \
    || die "deploy/docker/compose.ha.yaml does not validate"
  ok "deploy/docker/compose.ha.yaml validates"
else
  say "no docker compose / docker-compose: compose.yaml not exercised"
fi

say "whole run $((SECONDS - start_all)) s"
summary
