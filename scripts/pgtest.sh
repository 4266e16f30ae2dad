#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: on 127.0.0.1 only, on a free
# port, with its data in a fresh temporary directory, trust authentication
# and fsync on (the tests check durability).  It never touches a cluster of
# the machine's own (Debian's 15/main), and several can run at once: one per
# build directory, each on its own port.
#
#   pgtest.sh start DIR        initdb and start; DIR/url receives the URL
#                              postgresql://postgres@127.0.0.1:PORT/postgres
#   pgtest.sh stop DIR         stop it (fast shutdown) and remove it and DIR
#   pgtest.sh restart DIR      stop it abruptly (immediate: like a crash; the
#                              server recovers from its WAL) and start it again
#                              on the same port
#   pgtest.sh url DIR DB       creates database DB if missing; prints its URL
#   pgtest.sh run DIR DB CMD [ARG...]
#                              runs CMD with every "{url}" in its arguments
#                              replaced by database DB's URL
#
# DIR holds url, port and data (the path of the cluster's directory, under
# /tmp: the server runs as the "postgres" user when we are root, as initdb
# and postgres refuse root, and it must be able to reach its files whatever
# the permissions of the tree DIR lives in).  Exits non-zero, with the
# server's log, if the cluster cannot be started: the tests that need it
# then fail, never skip.
set -euo pipefail

die() { echo "pgtest: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] ||
    die "no PostgreSQL server found under /usr/lib/postgresql (scripts/deps.sh test installs it)"
  echo "$d"
}

# Runs a server binary as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' system user (the Debian package makes it)"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A port derived from DIR, so that build directories rarely meet; start()
# moves on to the next one if it is taken.
first_port() {
  echo $((54320 + $(printf '%s' "$1" | cksum | cut -d' ' -f1) % 2000))
}

# Starts the cluster in $data on port $1; fails if the server does not come up.
pg_start() {
  as_owner "$BIN/pg_ctl" -D "$data/db" -l "$data/log" -w -t 60 \
    -o "-p $1 -k $data" start >/dev/null 2>&1
}

start() {
  local dir=$1
  [ -f "$dir/data" ] && stop "$dir" 2>/dev/null || true # left by an interrupted run
  mkdir -p "$dir"
  data=$(mktemp -d /tmp/pgs-pg-XXXXXX)
  echo "$data" >"$dir/data"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
  chmod 700 "$data"
  as_owner "$BIN/initdb" -D "$data/db" -U postgres -A trust -E UTF8 --locale=C \
    --no-instructions >"$data/initdb.log" 2>&1 ||
    { cat "$data/initdb.log" >&2; die "initdb failed"; }
  cat >>"$data/db/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
logging_collector = off
log_min_messages = warning
EOF
  local port
  port=$(first_port "$dir")
  for _ in $(seq 1 20); do
    if pg_start "$port"; then
      echo "$port" >"$dir/port"
      echo "postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable" >"$dir/url"
      echo "pgtest: PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $data"
      return 0
    fi
    grep -q "could not bind\|could not create lock file" "$data/log" 2>/dev/null ||
      { tail -20 "$data/log" >&2; die "the server did not start"; }
    port=$((port + 1)) # taken by another cluster: try the next
  done
  tail -20 "$data/log" >&2
  die "no free port found"
}

stop() {
  local dir=$1
  [ -f "$dir/data" ] || { rm -rf "$dir"; return 0; }
  data=$(cat "$dir/data")
  if [ -d "$data/db" ]; then
    as_owner "$BIN/pg_ctl" -D "$data/db" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  case "$data" in /tmp/pgs-pg-*) rm -rf "$data" ;; esac
  rm -rf "$dir"
}

restart() {
  local dir=$1
  [ -f "$dir/data" ] && [ -f "$dir/port" ] || die "no cluster in $dir"
  data=$(cat "$dir/data")
  as_owner "$BIN/pg_ctl" -D "$data/db" -m immediate -w -t 60 stop >/dev/null 2>&1 ||
    die "could not stop the server"
  pg_start "$(cat "$dir/port")" || { tail -20 "$data/log" >&2; die "the server did not restart"; }
}

# The URL of database $2 in the cluster of $1, made if missing.
db_url() {
  local base db=$2
  [ -f "$1/url" ] || die "no cluster in $1 (pgtest.sh start $1 first)"
  base=$(cat "$1/url")
  [[ "$db" =~ ^[a-z0-9_]+$ ]] || die "database names here are [a-z0-9_]+: '$db'"
  if [ -z "$("$BIN/psql" "$base" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    "$BIN/psql" "$base" -qc "CREATE DATABASE $db" >/dev/null 2>&1 ||
      [ -n "$("$BIN/psql" "$base" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ] ||
      die "could not create database $db"
  fi
  echo "${base/\/postgres\?//$db?}"
}

run() {
  local dir=$1 db=$2 url
  shift 2
  url=$(db_url "$dir" "$db")
  local args=()
  for a in "$@"; do args+=("${a//\{url\}/$url}"); done
  exec "${args[@]}"
}

BIN=$(bindir)
cmd=${1:-}
[ $# -ge 2 ] || die "usage: pgtest.sh start|stop|restart DIR | url DIR DB | run DIR DB CMD [ARG...]"
dir=$(realpath -m "$2")
shift 2
case "$cmd" in
  start) start "$dir" ;;
  stop) stop "$dir" ;;
  restart) restart "$dir" ;;
  url) [ $# -eq 1 ] || die "usage: pgtest.sh url DIR DB"; db_url "$dir" "$1" ;;
  run) [ $# -ge 2 ] || die "usage: pgtest.sh run DIR DB CMD [ARG...]"; run "$dir" "$@" ;;
  *) die "unknown command '$cmd'" ;;
esac
