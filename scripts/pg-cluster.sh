#!/usr/bin/env bash
# A throw-away PostgreSQL cluster in DIR, for tests and for trying the PostgreSQL store.
#
#   scripts/pg-cluster.sh [start] DIR   # create (first time) and start; prints the URL
#   scripts/pg-cluster.sh stop DIR      # stop (PG_STOP_MODE=fast|immediate, default fast)
#   scripts/pg-cluster.sh restart DIR   # stop and start again on the same port
#   scripts/pg-cluster.sh with CMD...   # CMD with KMSGW_TEST_PG_URL set to a cluster made
#                                       # in a temp dir for it, stopped and removed after
#
# `start` prints on stdout
#   KMSGW_TEST_PG_URL=postgres://kmsgw:PASSWORD@127.0.0.1:PORT/kmsgw
#   KMSGW_TEST_PG_CA=DIR/tls/ca.pem
#   # stop with: scripts/pg-cluster.sh stop DIR
# The superuser `kmsgw` logs in over TCP on 127.0.0.1 with that password (SCRAM), with or
# without TLS (a certificate for localhost / 127.0.0.1 signed by the throw-away CA
# DIR/tls/ca.pem); the Unix socket is in DIR. Durability is switched off (fsync=off): for
# tests only. As root, the cluster runs as the `postgres` system user (PG_CLUSTER_USER
# to choose another), since PostgreSQL refuses to run as root; DIR is handed to that user.
# The server binaries are taken from PG_BINDIR, else the newest /usr/lib/postgresql/*/bin,
# else PATH (Debian: apt-get install postgresql).
set -euo pipefail

if [ "${1:-}" = with ]; then
  shift
  if [ "$#" -eq 0 ]; then echo "usage: $0 with CMD [ARGS...]" >&2; exit 2; fi
  tmp=$(mktemp -d)
  trap 'PG_STOP_MODE=immediate "$0" stop "$tmp" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
  url=$("$0" start "$tmp" | sed -n 's/^KMSGW_TEST_PG_URL=//p')
  [ -n "$url" ] || exit 1
  KMSGW_TEST_PG_URL=$url "$@"
  exit $?
fi

cmd=start
case "${1:-}" in start | stop | restart) cmd=$1; shift ;; esac
if [ "$#" -ne 1 ]; then echo "usage: $0 [start|stop|restart] DIR" >&2; exit 2; fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
data=$dir/data

bindir=${PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$candidate/initdb" ]; then bindir=$candidate; break; fi
  done
fi
if [ -z "$bindir" ] && command -v initdb >/dev/null; then bindir=$(dirname "$(command -v initdb)"); fi
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
  echo "PostgreSQL server binaries not found (Debian: apt-get install postgresql)" >&2
  exit 1
fi

# Commands that touch the cluster run as its owner.
owner=""
if [ "$(id -u)" -eq 0 ]; then
  owner=${PG_CLUSTER_USER:-postgres}
  id "$owner" >/dev/null 2>&1 || { echo "user $owner does not exist (it comes with Debian's postgresql package)" >&2; exit 1; }
fi
as_owner() {
  if [ -n "$owner" ]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}

pg_ctl() { as_owner "$bindir/pg_ctl" -D "$data" "$@"; }

print_env() {
  echo "KMSGW_TEST_PG_URL=postgres://kmsgw:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/kmsgw"
  echo "KMSGW_TEST_PG_CA=$dir/tls/ca.pem"
  echo "# stop with: $0 stop $dir"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Writes the settings this script owns (port included) and starts the server.
start_server() {
  local port=$1
  cat > "$data/kmsgw.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/tls/cert.pem'
ssl_key_file = '$dir/tls/key.pem'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 100
log_min_messages = warning
EOF
  [ -z "$owner" ] || chown "$owner" "$data/kmsgw.conf"
  pg_ctl -l "$dir/postgres.log" -w -t 60 start >/dev/null
}

case "$cmd" in
  stop)
    if [ -f "$data/postmaster.pid" ]; then pg_ctl -m "${PG_STOP_MODE:-fast}" -w stop >/dev/null; fi
    exit 0
    ;;
  restart)
    pg_ctl -m "${PG_STOP_MODE:-fast}" -w -t 60 -l "$dir/postgres.log" restart >/dev/null
    exit 0
    ;;
esac

if [ -f "$data/PG_VERSION" ]; then
  # An existing cluster: start it again on its port.
  if [ ! -f "$data/postmaster.pid" ]; then start_server "$(cat "$dir/port")"; fi
  print_env
  exit 0
fi

umask 077
od -An -N18 -tx1 /dev/urandom | tr -d ' \n' > "$dir/password"
"$here/dev-cert.sh" "$dir/tls" >/dev/null
if [ -n "$owner" ]; then
  chown -R "$owner" "$dir"
  as_owner test -x "$dir" || { echo "$owner cannot reach $dir: every parent directory must be searchable by it" >&2; exit 1; }
fi
as_owner "$bindir/initdb" -D "$data" -U kmsgw --pwfile="$dir/password" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
echo "include 'kmsgw.conf'" >> "$data/postgresql.conf"

# A free port: try random ones until the server binds one.
started=""
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  if port_in_use "$port"; then continue; fi
  if start_server "$port" 2>/dev/null; then started=$port; break; fi
done
if [ -z "$started" ]; then
  echo "could not start PostgreSQL; end of $dir/postgres.log:" >&2
  tail -n 20 "$dir/postgres.log" >&2 || true
  exit 1
fi
echo "$started" > "$dir/port"
"$bindir/createdb" -h "$dir" -p "$started" -U kmsgw kmsgw
print_env
