#!/usr/bin/env bash
# Make a throw-away TLS set for development and tests in DIR: a local CA (ca.pem) and a
# server certificate for localhost / 127.0.0.1 signed by it (cert.pem, key.pem).
# Clients trust ca.pem (curl --cacert DIR/ca.pem). Existing files are kept.
#
#   scripts/dev-cert.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
if [ -f cert.pem ] && [ -f key.pem ] && [ -f ca.pem ]; then exit 0; fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=KMS Gateway dev CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
  -extfile server.ext -out cert.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 644 ca.pem cert.pem
