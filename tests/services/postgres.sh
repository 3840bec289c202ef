#!/usr/bin/env bash
# A real PostgreSQL for the tests: a private server from Debian's packages on loopback, so the
# PostgreSQL index engine is tested against a real database, not a mock. Sourced by tests/run.sh:
# `postgres_start DIR` puts the cluster (DIR/data), its socket and postgres.log in DIR, makes a
# role and a database and exports ATOLL_TEST_PG_*; `postgres_stop` stops it. A missing PostgreSQL
# is installed with apt-get. As root, the server runs as the `postgres` user (it refuses root).
#
#   source tests/services/postgres.sh; postgres_start DIR; ...; postgres_stop
#   tests/services/postgres.sh run -- CMD...   (start PostgreSQL, run CMD with ATOLL_TEST_PG_* set, stop)
#   tests/services/postgres.sh ctl stop|start|restart [-m fast]
#                                              (pg_ctl on the server of ATOLL_TEST_PG_*, as its user:
#                                               for tests that take PostgreSQL away under atoll)

_pg_fail() { # MESSAGE: one clear line, then the tail of the server log, and stop the server
  echo "postgres_start: $1" >&2
  if [ -s "$_PG_DIR/postgres.log" ]; then
    echo "--- last lines of $_PG_DIR/postgres.log:" >&2
    tail -20 "$_PG_DIR/postgres.log" >&2
  fi
  postgres_stop
  return 1
}

# CMD...: run from DIR (the caller's directory may be closed to the postgres user), as the
# postgres user when we are root, as ourselves otherwise.
_pg_as() {
  if [ "$(id -u)" = 0 ]; then
    (cd "$_PG_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$_PG_DIR" && "$@")
  fi
}

# The directory holding initdb, pg_ctl and psql: the one initdb on PATH resolves to (Debian keeps
# them in /usr/lib/postgresql/VERSION/bin, off PATH), else Debian's newest version.
_pg_bindir() {
  local d
  if d=$(command -v initdb) && d=$(dirname "$(readlink -f "$d")") && [ -x "$d/pg_ctl" ] && [ -x "$d/psql" ]; then
    echo "$d"
    return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/psql" ] && { echo "$d"; return 0; }
  done
  return 1
}

postgres_start() {
  local dir=${1:?usage: postgres_start DIR}
  mkdir -p "$dir" && _PG_DIR=$(cd "$dir" && pwd) || return 1
  _PG_PID=

  if ! _PG_BIN=$(_pg_bindir); then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "postgres_start: PostgreSQL not found; running 'apt-get install postgresql'" \
      "(log in $_PG_DIR/postgres-install.log)" >&2
    # The package would create and start a `main` cluster on port 5432 for good: not wanted here.
    $sudo mkdir -p /etc/postgresql-common/createcluster.d &&
      echo "create_main_cluster = false # atoll's tests/services/postgres.sh runs its own" |
      $sudo tee /etc/postgresql-common/createcluster.d/atoll-tests.conf >/dev/null || return 1
    # `sudo VAR=value cmd`: sudo drops a variable set in front of it.
    if ! { $sudo apt-get update -qq &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
      >"$_PG_DIR/postgres-install.log" 2>&1; then
      echo "postgres_start: apt-get install postgresql failed:" >&2
      tail -20 "$_PG_DIR/postgres-install.log" >&2
      return 1
    fi
    _PG_BIN=$(_pg_bindir) || { echo "postgres_start: initdb, pg_ctl or psql still missing after apt-get" >&2; return 1; }
  fi

  # The server's files belong to the user it runs as; DIR also holds the socket, open to all.
  if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || { echo "postgres_start: no 'postgres' user to run the server as" >&2; return 1; }
    chown postgres: "$_PG_DIR" || return 1
  fi
  chmod 755 "$_PG_DIR" || return 1
  _pg_as test -w "$_PG_DIR" ||
    { echo "postgres_start: the postgres user cannot reach $_PG_DIR (a parent directory lacks o+x)" >&2; return 1; }

  # A free loopback port from the kernel, and a fresh password (hex: no quoting in SQL or URLs).
  local port password
  port=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
    { echo "postgres_start: could not pick a free port" >&2; return 1; }
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))') || return 1

  # Local (socket) connections are trusted, TCP ones need a SCRAM password.
  _pg_as "$_PG_BIN/initdb" -D "$_PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 --no-instructions >"$_PG_DIR/setup.log" 2>&1 ||
    { echo "postgres_start: initdb failed:" >&2; tail -20 "$_PG_DIR/setup.log" >&2; return 1; }

  # TLS as a site would offer it: a CA of the tests' own (ATOLL_TEST_PG_CA, for SSL_CERT_FILE) and
  # a certificate for 127.0.0.1 signed by it. Clients choose: sslmode=disable still connects.
  if ! { openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=atoll tests CA" \
    -keyout "$_PG_DIR/ca.key" -out "$_PG_DIR/ca.crt" &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$_PG_DIR/data/server.key" -out "$_PG_DIR/server.csr" &&
    printf 'subjectAltName=IP:127.0.0.1\n' >"$_PG_DIR/san.ext" &&
    openssl x509 -req -in "$_PG_DIR/server.csr" -CA "$_PG_DIR/ca.crt" -CAkey "$_PG_DIR/ca.key" \
      -CAcreateserial -days 2 -extfile "$_PG_DIR/san.ext" -out "$_PG_DIR/data/server.crt"; } \
    >>"$_PG_DIR/setup.log" 2>&1; then
    echo "postgres_start: making the test certificate with openssl failed:" >&2
    tail -20 "$_PG_DIR/setup.log" >&2
    return 1
  fi
  chmod 600 "$_PG_DIR/data/server.key"
  [ "$(id -u)" = 0 ] && chown postgres: "$_PG_DIR/data/server.key" "$_PG_DIR/data/server.crt"

  # In postgresql.conf, not on pg_ctl's command line, so a test can `pg_ctl restart` the server.
  # fsync and synchronous_commit keep their defaults: commits are tested as they run for real.
  cat >>"$_PG_DIR/data/postgresql.conf" <<EOF

# atoll's tests (tests/services/postgres.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$_PG_DIR'
max_connections = 200 # three atoll nodes' pools and the tests' own connections
timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_lock_waits = on
ssl = on
EOF

  # pg_ctl -w returns once the server accepts connections, or fails when it exits or after 20 s.
  local deadline=$((SECONDS + 20))
  if ! _pg_as "$_PG_BIN/pg_ctl" start -D "$_PG_DIR/data" -l "$_PG_DIR/postgres.log" -w -t 20 \
    >>"$_PG_DIR/setup.log" 2>&1; then
    _PG_PID=$(head -1 "$_PG_DIR/data/postmaster.pid" 2>/dev/null) || true
    if [ -n "$_PG_PID" ] && _pg_alive "$_PG_PID"; then
      _pg_fail "PostgreSQL did not accept connections on 127.0.0.1:$port within 20 s"
    else
      _pg_fail "PostgreSQL exited during startup (on 127.0.0.1:$port)"
    fi
    return 1
  fi
  _PG_PID=$(head -1 "$_PG_DIR/data/postmaster.pid" 2>/dev/null) && [ -n "$_PG_PID" ] ||
    { _pg_fail "no postmaster.pid after pg_ctl start"; return 1; }

  # The role and the database, as the superuser over the socket. CREATEDB: a test may make a
  # database of its own. The password goes through stdin, not a command line.
  printf '%s\n' "CREATE ROLE atoll LOGIN CREATEDB PASSWORD '$password';" \
    "CREATE DATABASE atoll_tests OWNER atoll;" |
    "$_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$_PG_DIR" -p "$port" -U postgres -d postgres \
      >>"$_PG_DIR/setup.log" 2>&1 ||
    { _pg_fail "creating the role and the database failed (see $_PG_DIR/setup.log)"; return 1; }

  export ATOLL_TEST_PG_URL="postgres://atoll@127.0.0.1:$port/atoll_tests"
  export ATOLL_TEST_PG_PASSWORD=$password
  export ATOLL_TEST_PG_HOST=127.0.0.1
  export ATOLL_TEST_PG_PORT=$port
  export ATOLL_TEST_PG_SOCKET_DIR=$_PG_DIR
  export ATOLL_TEST_PG_BIN=$_PG_BIN # psql of the server's version, for the tests' own queries
  export ATOLL_TEST_PG_DATA=$_PG_DIR/data # for `postgres.sh ctl` (a test restarting the server)
  export ATOLL_TEST_PG_CA=$_PG_DIR/ca.crt # the CA the server's certificate is signed by

  # Usable means the tests' own way in answers: TCP, role atoll, its password, its database.
  until PGPASSWORD=$password PGCONNECT_TIMEOUT=5 "$_PG_BIN/psql" -X -q -At -w -h 127.0.0.1 -p "$port" \
    -U atoll -d atoll_tests -c 'SELECT 1' >/dev/null 2>>"$_PG_DIR/setup.log"; do
    ((SECONDS < deadline)) || { _pg_fail "$ATOLL_TEST_PG_URL did not accept the password within 20 s"; return 1; }
    sleep 0.1
  done
}

# PID: is it running? A zombie is not: the orphaned postmaster's new parent (PID 1) may take a
# second to reap it, and kill -0 still succeeds on it meanwhile.
_pg_alive() {
  local stat
  kill -0 "$1" 2>/dev/null && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

postgres_stop() { # pg_ctl stop -m fast, up to 10 s, then SIGKILL; idempotent
  local pid
  # The postmaster running now: a test may have restarted the server (`ctl`) since the start.
  pid=$(head -1 "${_PG_DIR:-/nonexistent}/data/postmaster.pid" 2>/dev/null) || pid=${_PG_PID:-}
  [ -n "$pid" ] || return 0
  # Fast: roll back open transactions, close connections, checkpoint. pg_ctl -w returns once the
  # postmaster has exited. Backends left behind by a SIGKILLed postmaster notice and exit.
  if [ -n "$pid" ] && _pg_alive "$pid" &&
    ! _pg_as "$_PG_BIN/pg_ctl" stop -D "$_PG_DIR/data" -m fast -w -t 10 >>"$_PG_DIR/setup.log" 2>&1; then
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do _pg_alive "$pid" || break; sleep 0.1; done
  fi
  _PG_PID=
  return 0
}

# ACTION [ARGS...]: pg_ctl ACTION on the server postgres_start made, found from ATOLL_TEST_PG_DATA
# and ATOLL_TEST_PG_BIN (a test knows only its environment), as the user it runs as; waits up to
# 20 s for the action to finish (a start: until connections are accepted).
postgres_ctl() {
  local data=${ATOLL_TEST_PG_DATA:?postgres_ctl: ATOLL_TEST_PG_DATA is not set (postgres_start sets it)}
  _PG_DIR=$(dirname "$data")
  _PG_BIN=${ATOLL_TEST_PG_BIN:?postgres_ctl: ATOLL_TEST_PG_BIN is not set (postgres_start sets it)}
  _pg_as "$_PG_BIN/pg_ctl" "$@" -D "$data" -l "$_PG_DIR/postgres.log" -w -t 20
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ "${1:-}" = ctl ] && [ $# -ge 2 ]; then
    shift
    postgres_ctl "$@"
    exit
  fi
  [ "${1:-}" = run ] && [ "${2:-}" = -- ] && [ $# -ge 3 ] ||
    { echo "usage: $0 run -- CMD [ARGS...] | $0 ctl stop|start|restart [-m fast]" >&2; exit 2; }
  shift 2
  _postgres_run_dir=$(mktemp -d /tmp/atoll-postgres.XXXXXX)
  trap 'postgres_stop; rm -rf "$_postgres_run_dir"' EXIT
  postgres_start "$_postgres_run_dir"
  status=0
  "$@" || status=$?
  exit "$status"
fi
