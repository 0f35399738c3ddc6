#!/usr/bin/env bash
# Local infrastructure for auto-topup without Docker:
#   - Apache Kafka 4.x (KRaft, single node) run from Maven Central jars,
#   - PostgreSQL from Debian's packages (installed with apt-get when missing),
#   - localstripe (fake Stripe server) from the project's venv,
#   - stripe-mock (Stripe's own mock, which validates requests against Stripe's OpenAPI
#     spec), built with `go install` into $STACK_CACHE_DIR/go/bin when missing.
# Everything listens on 127.0.0.1 only. State (data, logs, pids) lives in
# $STACK_DIR (default $REPO/.stack); the Kafka jars are cached in
# $STACK_CACHE_DIR/kafka-<version>/libs (default $REPO/.cache).
#
# Usage: deploy/local/stack.sh COMMAND
#   up | down | status | env | env-sasl | logs | reset
#   start-kafka | stop-kafka | restart-kafka | reset-kafka
#   start-postgres | stop-postgres | restart-postgres
#   start-localstripe | stop-localstripe | restart-localstripe
#   install-stripe-mock | start-stripe-mock | stop-stripe-mock | restart-stripe-mock
#
# Environment overrides (defaults in brackets):
#   STACK_DIR [$REPO/.stack]   STACK_CACHE_DIR [$REPO/.cache]
#   STACK_KAFKA_PORT [9092]    STACK_KAFKA_CONTROLLER_PORT [9093]
#   STACK_KAFKA_SASL_PORT [9094]  (the SASL_SSL listener: SCRAM-SHA-512 over TLS; `env-sasl`)
#   STACK_PG_PORT [54320]      STACK_STRIPE_PORT [8420]
#   STACK_LOCALSTRIPE [$REPO/.venv/bin/localstripe]  (its venv's python runs
#       deploy/local/localstripe_launch.py; STACK_LOCALSTRIPE_PYTHON overrides)
#   STACK_KAFKA_VERSION [kafka.version in deploy/local/kafka/pom.xml]
#   STACK_KAFKA_TIMEOUT [90]  STACK_PG_TIMEOUT [30]  STACK_STRIPE_TIMEOUT [30]
#   STACK_KAFKA_HEAP_OPTS ["-Xmx512m -Xms256m"]  STACK_JAVA [java]
#   STACK_PG_BINDIR [newest /usr/lib/postgresql/*/bin]
#   STACK_STRIPE_MOCK_PORT [12111] (http)  STACK_STRIPE_MOCK_HTTPS_PORT [12112]
#   STACK_STRIPE_MOCK [$STACK_CACHE_DIR/go/bin/stripe-mock]  STACK_STRIPE_MOCK_VERSION [v0.203.0]
#   STACK_GO [go on PATH, else /usr/local/go/bin/go]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

STACK_DIR="${STACK_DIR:-$REPO/.stack}"
STACK_CACHE_DIR="${STACK_CACHE_DIR:-$REPO/.cache}"
KAFKA_PORT="${STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_PORT="${STACK_KAFKA_SASL_PORT:-9094}"
KAFKA_SASL_USER="auto-topup"
PG_PORT="${STACK_PG_PORT:-54320}"
STRIPE_PORT="${STACK_STRIPE_PORT:-8420}"
PG_DB="auto_topup"
STRIPE_KEY="sk_test_local_fake"   # localstripe accepts any key; clearly not a real one
LOCALSTRIPE="${STACK_LOCALSTRIPE:-$REPO/.venv/bin/localstripe}"
KAFKA_TIMEOUT="${STACK_KAFKA_TIMEOUT:-90}"
PG_TIMEOUT="${STACK_PG_TIMEOUT:-30}"
STRIPE_TIMEOUT="${STACK_STRIPE_TIMEOUT:-30}"
KAFKA_HEAP_OPTS="${STACK_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
JAVA="${STACK_JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}"
# stripe-mock (see its section below)
STRIPE_MOCK_PORT="${STACK_STRIPE_MOCK_PORT:-12111}"
STRIPE_MOCK_HTTPS_PORT="${STACK_STRIPE_MOCK_HTTPS_PORT:-12112}"
STRIPE_MOCK_VERSION="${STACK_STRIPE_MOCK_VERSION:-v0.203.0}"
STRIPE_MOCK_GOBIN="$STACK_CACHE_DIR/go/bin"
STRIPE_MOCK="${STACK_STRIPE_MOCK:-$STRIPE_MOCK_GOBIN/stripe-mock}"

KAFKA_POM="$HERE/kafka/pom.xml"
KAFKA_VERSION="${STACK_KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")}"
KAFKA_LIBS="$STACK_CACHE_DIR/kafka-$KAFKA_VERSION/libs"

RUN_DIR="$STACK_DIR/run"          # pid files and small markers
LOG_DIR="$STACK_DIR/logs"         # kafka + localstripe logs
KAFKA_HOME="$STACK_DIR/kafka"     # server.properties, data/
KAFKA_SECURITY="$KAFKA_HOME/security"  # throwaway CA, broker certificate, SCRAM password
PG_HOME="$STACK_DIR/postgres"     # data/ and postgres.log, owned by the postgres user
# (may be a symlink to /var/tmp, see pg_prepare_home: postgres gets the real path)
[[ -L "$PG_HOME" ]] && PG_HOME="$(readlink -f "$PG_HOME")"
STRIPE_HOME="$STACK_DIR/localstripe"

KAFKA_PID="$RUN_DIR/kafka.pid"
KAFKA_LOG="$LOG_DIR/kafka-server.log"   # log4j file appender (INFO)
KAFKA_OUT="$LOG_DIR/kafka.out"          # JVM stdout/stderr (WARN+ and crashes)
STRIPE_PID="$RUN_DIR/localstripe.pid"
STRIPE_LOG="$LOG_DIR/localstripe.log"
PG_LOG="$PG_HOME/postgres.log"
STRIPE_MOCK_PID="$RUN_DIR/stripe-mock.pid"
STRIPE_MOCK_LOG="$LOG_DIR/stripe-mock.log"

# ---------------------------------------------------------------- helpers

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Report a failed part with the tail of its log(s), then exit non-zero.
fail_part() {
  local part="$1" reason="$2"; shift 2
  printf '[stack] ERROR: %s failed: %s\n' "$part" "$reason" >&2
  local f
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    printf -- '----- last 40 lines of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
  exit 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
# shellcheck disable=SC2016  # (the inner scripts get their values as arguments)
tcp_open() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Print the HTTP status line of GET $2 on 127.0.0.1:$1 (empty on failure).
# shellcheck disable=SC2016
http_status() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
    IFS= read -r line <&3 && printf "%s\n" "$line" | tr -d "\r"
  ' _ "$1" "$2" 2>/dev/null || true
}

# True when process $1 exists and is not a zombie (an exited child that its
# parent, possibly a non-reaping init, has not collected yet: kill -0 succeeds on those).
proc_alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"          # drop "pid (comm) "; the state letter comes next
  [[ -n "$stat" && "${stat:0:1}" != Z ]]
}

# True when pid file $1 names a live process, whatever its command line: for the wait right after
# a launch, when the child may not have exec'd its program yet (its command line is still the
# shell's, which pid_alive's marker would not find).
launched_alive() {
  [[ -s "$1" ]] && proc_alive "$(<"$1")"
}

# True when pid file $1 names a live process whose command line contains $2.
pid_alive() {
  local pidfile="$1" marker="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] && proc_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# Send SIGTERM to the process in pid file $1, wait up to $2 s, then SIGKILL.
# $3: command-line marker (see pid_alive); $4: name; $5=quiet: no "stopping" line.
stop_pid() {
  local pidfile="$1" grace="$2" marker="$3" name="$4" pid i
  if ! pid_alive "$pidfile" "$marker"; then
    rm -f "$pidfile"; return 0
  fi
  pid="$(<"$pidfile")"
  [[ "${5:-}" == quiet ]] || log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    proc_alive "$pid" || break
    sleep 0.1
  done
  if proc_alive "$pid"; then
    log "$name did not exit within ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do proc_alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

ensure_dirs() {
  mkdir -p "$STACK_DIR" "$RUN_DIR" "$LOG_DIR" "$KAFKA_HOME" "$STRIPE_HOME"
  [[ -f "$STACK_DIR/.gitignore" ]] || echo '*' >"$STACK_DIR/.gitignore"   # never commit state
  # 0755 so that the postgres OS user can reach $PG_HOME inside.
  chmod 0755 "$STACK_DIR"
}

# Serialise commands that change the stack (two concurrent `up`s, etc.).
# Children we start get fd 9 closed (9>&-) so they never hold the lock.
take_lock() {
  ensure_dirs
  exec 9>"$RUN_DIR/lock"
  flock -w 300 9 || die "another stack.sh holds $RUN_DIR/lock"
}

# ---------------------------------------------------------------- kafka

# Download the broker jars once (Maven), into a temp dir renamed into place.
kafka_fetch() {
  [[ -d "$KAFKA_LIBS" ]] && return 0
  [[ -n "$KAFKA_VERSION" ]] || die "cannot read kafka.version from $KAFKA_POM"
  command -v mvn >/dev/null || die "mvn not found (Maven is needed once, to fetch the Kafka jars)"
  local root="$STACK_CACHE_DIR" tmp started
  mkdir -p "$root"
  [[ -f "$root/.gitignore" ]] || echo '*' >"$root/.gitignore"
  rm -rf "$root"/.kafka-"$KAFKA_VERSION".tmp.*      # leftovers of an interrupted fetch
  tmp="$(mktemp -d "$root/.kafka-$KAFKA_VERSION.tmp.XXXXXX")"
  chmod 0755 "$tmp"                                  # mktemp makes it 0700
  started="$(now)"
  log "fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS"
  if ! mvn -B -q -f "$KAFKA_POM" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -Dkafka.version="$KAFKA_VERSION" \
      -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
      >"$LOG_DIR/kafka-fetch.log" 2>&1 9>&-; then
    rm -rf "$tmp"
    fail_part kafka "Maven could not fetch the Kafka $KAFKA_VERSION jars" "$LOG_DIR/kafka-fetch.log"
  fi
  if [[ ! -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || ! compgen -G "$tmp/libs/log4j-core-*.jar" >/dev/null; then
    rm -rf "$tmp"
    fail_part kafka "Maven finished but the jars are incomplete" "$LOG_DIR/kafka-fetch.log"
  fi
  rm -rf "$STACK_CACHE_DIR/kafka-$KAFKA_VERSION"     # a dir without libs/ is junk
  mv -T "$tmp" "$STACK_CACHE_DIR/kafka-$KAFKA_VERSION"  # atomic rename
  log "Kafka jars cached in $(elapsed "$started")s ($(du -sh "$KAFKA_LIBS" | cut -f1))"
}

kafka_running() { pid_alive "$KAFKA_PID" "$KAFKA_HOME/server.properties"; }

# Ready = the log written since our launch says "Kafka Server started" and the port answers.
kafka_ready() {
  local offset=0
  [[ -s "$RUN_DIR/kafka.log-offset" ]] && offset="$(<"$RUN_DIR/kafka.log-offset")"
  [[ -f "$KAFKA_LOG" ]] || return 1
  # The log may have rolled over since launch: then search all of it.
  (( $(stat -c %s "$KAFKA_LOG") >= offset )) || offset=0
  # (no grep -q: it would quit early and, with pipefail, tail's SIGPIPE would count as failure)
  tail -c +"$((offset + 1))" "$KAFKA_LOG" | grep -F 'Kafka Server started' >/dev/null && tcp_open "$KAFKA_PORT"
}

# Random 22-char base64url cluster id (like `kafka-storage random-uuid`).
kafka_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { printf '%s' "$id"; return; }
  done
}

kafka_launch() {
  if kafka_running; then return 0; fi
  command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME or STACK_JAVA)"
  # Right after a stop (a restart), the ports can take a moment to close: wait up to 10 s.
  local i
  for ((i = 0; i < 100; i++)); do
    tcp_open "$KAFKA_PORT" || tcp_open "$KAFKA_CONTROLLER_PORT" || tcp_open "$KAFKA_SASL_PORT" ||
      break
    sleep 0.1
  done
  if tcp_open "$KAFKA_PORT" || tcp_open "$KAFKA_CONTROLLER_PORT" || tcp_open "$KAFKA_SASL_PORT"; then
    fail_part kafka "port $KAFKA_PORT, $KAFKA_SASL_PORT or $KAFKA_CONTROLLER_PORT is already used by another process"
  fi
  kafka_fetch
  local data="$KAFKA_HOME/data" props="$KAFKA_HOME/server.properties"
  mkdir -p "$data" "$KAFKA_HOME/tmp"
  kafka_security_material
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@SASL_PORT@|$KAFKA_SASL_PORT|g" \
      -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@LOG_DIRS@|$data|g" \
      -e "s|@SECURITY_DIR@|$KAFKA_SECURITY|g" \
      "$HERE/kafka/server.properties.template" >"$props"

  local heap jvm
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  jvm=("${heap[@]}"
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    -Djava.io.tmpdir="$KAFKA_HOME/tmp"
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties"
    -Dkafka.logs.dir="$LOG_DIR"
    -cp "$KAFKA_LIBS/*")

  # Format the storage only the first time, with the SASL_SSL listener's SCRAM user.
  if [[ ! -f "$data/meta.properties" ]]; then
    log "formatting Kafka storage in $data"
    "$JAVA" "${jvm[@]}" kafka.tools.StorageTool format -t "$(kafka_cluster_id)" -c "$props" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$(<"$KAFKA_SECURITY/sasl-password")]" \
      >>"$KAFKA_OUT" 2>&1 9>&- || fail_part kafka "storage format failed" "$KAFKA_OUT"
    cp "$KAFKA_SECURITY/sasl-password" "$KAFKA_SECURITY/sasl-password.formatted"
  fi
  kafka_scram_known || log "$(kafka_scram_missing)"

  # Remember where this run's log starts, then launch fully detached.
  if [[ -f "$KAFKA_LOG" ]]; then stat -c %s "$KAFKA_LOG"; else echo 0; fi >"$RUN_DIR/kafka.log-offset"
  date +%s.%N >"$RUN_DIR/kafka.launched-at"
  printf '\n===== %s launching Kafka %s =====\n' "$(date -Is)" "$KAFKA_VERSION" >>"$KAFKA_OUT"
  # setsid: own session, so Ctrl-C / the end of `make up` does not reach it.
  # (Not a process-group leader here, so setsid execs java in place: $! is java's pid.)
  setsid nohup "$JAVA" "${jvm[@]}" kafka.Kafka "$props" </dev/null >>"$KAFKA_OUT" 2>&1 9>&- &
  echo $! >"$KAFKA_PID"
  log "launched Kafka $KAFKA_VERSION (pid $!) on 127.0.0.1:$KAFKA_PORT"
}

# The SASL_SSL listener's material, made once per stack dir (and again when a part is missing,
# e.g. in a stack dir made before the listener existed): a throwaway CA, a broker certificate
# for 127.0.0.1 and localhost signed by it (PEM: key and chain in one file, as Kafka reads it),
# and the SCRAM user's random password. Nothing here is a real secret; it never leaves $STACK_DIR.
kafka_security_material() {
  local d="$KAFKA_SECURITY"
  mkdir -p "$d"; chmod 0700 "$d"
  if [[ ! -s "$d/sasl-password" ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$d/sasl-password")
  fi
  [[ -s "$d/ca.pem" && -s "$d/broker-keystore.pem" ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (it makes the SASL_SSL listener's certificates)"
  log "making a throwaway CA and broker certificate in $d"
  (
    cd "$d" && umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.pem \
      -subj "/CN=auto-topup local stack CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      "authorityKeyIdentifier=keyid,issuer" "subjectKeyIdentifier=hash" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile broker.ext -out broker.pem
    cat broker.key broker.pem ca.pem >broker-keystore.pem
    chmod 0644 ca.pem                  # clients read it
  ) >"$LOG_DIR/kafka-tls.log" 2>&1 9>&- || fail_part kafka "openssl could not make the certificates" "$LOG_DIR/kafka-tls.log"
}

# True when the storage was formatted with the SCRAM user whose password env-sasl prints.
kafka_scram_known() {
  cmp -s "$KAFKA_SECURITY/sasl-password" "$KAFKA_SECURITY/sasl-password.formatted" 2>/dev/null
}

kafka_scram_missing() {
  printf '%s' "the SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_PORT has no usable user: this " \
    "stack's Kafka storage was formatted before it (SCRAM users are made at format time). " \
    "Run '$0 reset-kafka' to re-format Kafka's storage (its topics are lost, PostgreSQL is kept)."
}

kafka_wait() {
  local deadline=$((SECONDS + KAFKA_TIMEOUT)) started
  while ! kafka_ready; do
    launched_alive "$KAFKA_PID" || fail_part kafka "the broker process exited" "$KAFKA_LOG" "$KAFKA_OUT"
    (( SECONDS < deadline )) || fail_part kafka "not ready within ${KAFKA_TIMEOUT}s" "$KAFKA_LOG" "$KAFKA_OUT"
    sleep 0.2
  done
  started="$(cat "$RUN_DIR/kafka.launched-at" 2>/dev/null || now)"
  log "kafka ready on 127.0.0.1:$KAFKA_PORT (pid $(<"$KAFKA_PID"), $(elapsed "$started")s since launch)"
}

kafka_start() { kafka_launch; kafka_wait; }
kafka_stop()  { stop_pid "$KAFKA_PID" 30 "$KAFKA_HOME/server.properties" kafka "${1:-}"; }

# A new Kafka storage (and SCRAM user); the rest of the stack is kept.
kafka_reset() {
  kafka_stop
  log "deleting Kafka's storage in $KAFKA_HOME/data"
  rm -rf "$KAFKA_HOME/data" "$KAFKA_SECURITY/sasl-password.formatted"
  kafka_start
}

# ---------------------------------------------------------------- postgres

IS_ROOT=0; [[ "$(id -u)" == 0 ]] && IS_ROOT=1

# Postgres refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
  if (( IS_ROOT )); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Where initdb/pg_ctl live: override, newest Debian version, pg_config, PATH.
pg_find_bindir() {
  local d
  if [[ -n "${STACK_PG_BINDIR:-}" ]]; then printf '%s' "$STACK_PG_BINDIR"; return; fi
  # An existing cluster needs the binaries of its own major version.
  if [[ -f "$PG_HOME/data/PG_VERSION" ]]; then
    d="/usr/lib/postgresql/$(<"$PG_HOME/data/PG_VERSION")/bin"
    if [[ -x "$d/initdb" ]]; then printf '%s' "$d"; return; fi
  fi
  # shellcheck disable=SC2012  # (Debian's dirs are plain version numbers)
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$d" && -x "$d/initdb" ]]; then printf '%s' "$d"; return; fi
  if command -v pg_config >/dev/null; then
    d="$(pg_config --bindir 2>/dev/null || true)"   # libpq-dev alone has pg_config: check initdb
    if [[ -n "$d" && -x "$d/initdb" ]]; then printf '%s' "$d"; return; fi
  fi
  if command -v initdb >/dev/null; then dirname "$(readlink -f "$(command -v initdb)")"; fi
}

# Install Debian's postgresql when no initdb is found (apt-get update only then).
pg_install() {
  log "PostgreSQL server not found: installing Debian's postgresql package"
  local sudo=()
  if (( ! IS_ROOT )); then
    if ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
      die "PostgreSQL is not installed and this user cannot apt-get: run 'apt-get install -y postgresql' as root"
    fi
    sudo=(sudo -n)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 9>&-
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 9>&-
}

PG_BIN=""
pg_bin() {
  [[ -n "$PG_BIN" ]] && return 0
  PG_BIN="$(pg_find_bindir)"
  if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
    pg_install
    PG_BIN="$(pg_find_bindir)"
    [[ -n "$PG_BIN" && -x "$PG_BIN/initdb" ]] || die "initdb still not found after installing postgresql"
  fi
}

# As root, $PG_HOME must be reachable by the postgres user. If a parent of
# $STACK_DIR is closed to it (e.g. a clone under /root), keep the cluster in
# /var/tmp instead and leave a symlink at $PG_HOME.
pg_prepare_home() {
  (( IS_ROOT )) || { mkdir -p "$PG_HOME"; return; }
  id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (is Debian's postgresql installed?)"
  if [[ ! -e "$PG_HOME" ]]; then
    if runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
      mkdir -p "$PG_HOME"
    else
      local alt
      alt="/var/tmp/auto-topup-stack-pg-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)"
      log "postgres user cannot reach $STACK_DIR: keeping the cluster in $alt"
      mkdir -p "$alt"; chmod 0755 "$alt"
      ln -sfn "$alt" "$PG_HOME"
      PG_HOME="$alt"; PG_LOG="$PG_HOME/postgres.log"
    fi
  fi
  chown postgres: "$PG_HOME"
  chmod 0755 "$PG_HOME"
}

# Unix socket in the data dir, unless the path would be too long for a socket.
pg_socket_dir() {
  local d="$PG_HOME/data"
  if (( ${#d} + 20 > 100 )); then d="/tmp"; fi
  printf '%s' "$d"
}

# Running = the pid in postmaster.pid is a live postgres (no install needed to tell).
pg_running() {
  local pid
  pid="$(head -n 1 "$PG_HOME/data/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q postgres
}

# Lock files left by a killed server name a pid that is gone, reused, or a zombie
# not yet reaped (postgres would take a zombie for a live server and refuse to
# start). Remove those; postgres still checks that no old backend holds its
# shared memory.
pg_clear_stale_lock() {
  local f="$1" pid
  [[ -f "$f" ]] || return 0
  pid="$(head -n 1 "$f" 2>/dev/null || true)"
  pid="${pid#-}"                       # the socket lock may hold -PID
  if [[ "$pid" =~ ^[0-9]+$ ]] && proc_alive "$pid" &&
     tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q postgres; then
    return 0
  fi
  log "removing stale $f"
  as_pg rm -f "$f"
}

pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres 2>/dev/null &&
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1
}

pg_init() {
  local data="$PG_HOME/data"
  [[ -f "$data/PG_VERSION" ]] && return 0
  log "creating PostgreSQL cluster in $data"
  as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --no-sync \
    -E UTF8 --locale=C --no-instructions >"$PG_HOME/initdb.log" 2>&1 9>&- ||
    fail_part postgres "initdb failed" "$PG_HOME/initdb.log"
  # Throwaway test cluster: speed over durability.
  as_pg tee -a "$data/postgresql.conf" >/dev/null <<'EOF'

# ---- auto-topup local stack (deploy/local/stack.sh) ----
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 256MB
log_line_prefix = '%m [%p] %q%u@%d '
# listen address, port and socket dir are set on each start by stack.sh
include_if_exists = 'stack_runtime.conf'
EOF
}

pg_start() {
  pg_bin
  pg_prepare_home
  local data="$PG_HOME/data"
  if [[ -f "$data/PG_VERSION" ]]; then
    local have; have="$("$PG_BIN/postgres" --version | grep -oE '[0-9]+' | head -n 1)"
    [[ "$(<"$data/PG_VERSION")" == "$have" ]] ||
      die "cluster in $data is PostgreSQL $(<"$data/PG_VERSION") but $PG_BIN is $have: run '$0 reset'"
  fi
  if pg_running; then
    if pg_ready; then pg_create_db; log "postgres already running and answering"; return 0; fi
  else
    if tcp_open "$PG_PORT"; then
      fail_part postgres "port $PG_PORT is already used by another process"
    fi
    pg_init
    pg_clear_stale_lock "$data/postmaster.pid"
    pg_clear_stale_lock "$(pg_socket_dir)/.s.PGSQL.$PG_PORT.lock"
    # Loopback only; port and socket dir may change between runs.
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
      "$PG_PORT" "$(pg_socket_dir)" | as_pg tee "$data/stack_runtime.conf" >/dev/null
    log "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$PG_LOG" -w -t "$PG_TIMEOUT" start \
      >"$LOG_DIR/pg_ctl.out" 2>&1 9>&- ||
      fail_part postgres "pg_ctl start failed" "$LOG_DIR/pg_ctl.out" "$PG_LOG"
  fi
  local deadline=$((SECONDS + PG_TIMEOUT))
  until pg_ready; do
    (( SECONDS < deadline )) || fail_part postgres "not answering within ${PG_TIMEOUT}s" "$PG_LOG"
    sleep 0.2
  done
  pg_create_db
  log "postgres ready on 127.0.0.1:$PG_PORT"
}

pg_create_db() {
  local psql=("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
  if [[ "$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]]; then
    "${psql[@]}" -c "create database $PG_DB" >/dev/null || fail_part postgres "cannot create database $PG_DB" "$PG_LOG"
    log "created database $PG_DB"
  fi
}

pg_stop() {
  [[ -f "$PG_HOME/data/PG_VERSION" ]] || return 0
  pg_running || return 0
  pg_bin
  log "stopping PostgreSQL"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_HOME/data" -m fast -w -t 60 stop >/dev/null 9>&- ||
    fail_part postgres "pg_ctl stop failed" "$PG_LOG"
}

# ---------------------------------------------------------------- localstripe

stripe_python() {
  if [[ -n "${STACK_LOCALSTRIPE_PYTHON:-}" ]]; then printf '%s' "$STACK_LOCALSTRIPE_PYTHON"; return; fi
  [[ -x "$LOCALSTRIPE" ]] ||
    fail_part localstripe "$LOCALSTRIPE not found: install the venv (localstripe is a dev dependency) or set STACK_LOCALSTRIPE"
  local bin; bin="$(dirname "$LOCALSTRIPE")"
  if [[ -x "$bin/python" ]]; then printf '%s' "$bin/python"; return; fi
  # Not a venv layout: use the interpreter from the script's shebang.
  sed -n '1s/^#![[:space:]]*//p' "$LOCALSTRIPE" | cut -d' ' -f1
}

stripe_running() { pid_alive "$STRIPE_PID" localstripe_launch.py; }
stripe_ready() { [[ "$(http_status "$STRIPE_PORT" /js.stripe.com/v3/)" == HTTP/1.?\ * ]]; }

stripe_start() {
  if stripe_running; then
    if stripe_ready; then log "localstripe already running and answering"; return 0; fi
  else
    if tcp_open "$STRIPE_PORT"; then
      fail_part localstripe "port $STRIPE_PORT is already used by another process"
    fi
    local py; py="$(stripe_python)"
    mkdir -p "$STRIPE_HOME"
    printf '\n===== %s launching localstripe =====\n' "$(date -Is)" >>"$STRIPE_LOG"
    # TMPDIR: anything it puts in the temp dir stays in the state dir. In memory: localstripe
    # pickles its whole store on every write, which slows down as the store grows
    # (STACK_STRIPE_PERSIST=1 keeps it on disk across restarts).
    local keep=(--in-memory)
    [[ "${STACK_STRIPE_PERSIST:-0}" == 1 ]] && keep=()
    TMPDIR="$STRIPE_HOME" setsid nohup "$py" "$HERE/localstripe_launch.py" "${keep[@]}" \
      --host 127.0.0.1 --port "$STRIPE_PORT" --state-file "$STRIPE_HOME/localstripe.pickle" \
      </dev/null >>"$STRIPE_LOG" 2>&1 9>&- &
    echo $! >"$STRIPE_PID"
  fi
  local deadline=$((SECONDS + STRIPE_TIMEOUT))
  until stripe_ready; do
    launched_alive "$STRIPE_PID" || fail_part localstripe "the process exited" "$STRIPE_LOG"
    (( SECONDS < deadline )) || fail_part localstripe "not answering within ${STRIPE_TIMEOUT}s" "$STRIPE_LOG"
    sleep 0.2
  done
  log "localstripe ready on http://127.0.0.1:$STRIPE_PORT (pid $(<"$STRIPE_PID"))"
}

stripe_stop() { stop_pid "$STRIPE_PID" 10 localstripe_launch.py localstripe; }

# ---------------------------------------------------------------- stripe-mock
# Stripe's own mock server: it answers fixtures, but validates every request against Stripe's
# OpenAPI spec (unknown or misspelled parameters are refused, as Stripe refuses them).

stripe_mock_go() {
  if [[ -n "${STACK_GO:-}" ]]; then
    command -v "$STACK_GO" >/dev/null || die "STACK_GO=$STACK_GO is not an executable"
    printf '%s' "$STACK_GO"; return
  fi
  if command -v go >/dev/null; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then printf '%s' /usr/local/go/bin/go; return; fi
  die "stripe-mock is not built and Go is not found (neither on PATH nor in /usr/local/go/bin): install Go 1.22+ (https://go.dev/doc/install) or set STACK_GO"
}

# Build stripe-mock once, into the project's cache (its GOPATH and build cache there too).
stripe_mock_install() {
  [[ -x "$STRIPE_MOCK" ]] && return 0
  [[ -z "${STACK_STRIPE_MOCK:-}" ]] || die "STACK_STRIPE_MOCK=$STRIPE_MOCK is not an executable"
  local go started; go="$(stripe_mock_go)"
  mkdir -p "$STRIPE_MOCK_GOBIN" "$LOG_DIR"
  [[ -f "$STACK_CACHE_DIR/.gitignore" ]] || echo '*' >"$STACK_CACHE_DIR/.gitignore"
  started="$(now)"
  log "building stripe-mock $STRIPE_MOCK_VERSION with $go into $STRIPE_MOCK_GOBIN"
  if ! GOBIN="$STRIPE_MOCK_GOBIN" GOPATH="$STACK_CACHE_DIR/go/path" \
      GOCACHE="$STACK_CACHE_DIR/go/build" GOFLAGS=-modcacherw \
      "$go" install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION" \
      >"$LOG_DIR/stripe-mock-install.log" 2>&1 9>&-; then
    fail_part stripe-mock "go install failed" "$LOG_DIR/stripe-mock-install.log"
  fi
  log "stripe-mock built in $(elapsed "$started")s"
}

stripe_mock_running() { pid_alive "$STRIPE_MOCK_PID" "127.0.0.1:$STRIPE_MOCK_PORT"; }
stripe_mock_ready() { [[ "$(http_status "$STRIPE_MOCK_PORT" /v1/charges)" == HTTP/1.?\ * ]]; }

stripe_mock_start() {
  if stripe_mock_running; then
    if stripe_mock_ready; then log "stripe-mock already running and answering"; return 0; fi
  else
    if tcp_open "$STRIPE_MOCK_PORT" || tcp_open "$STRIPE_MOCK_HTTPS_PORT"; then
      fail_part stripe-mock "port $STRIPE_MOCK_PORT or $STRIPE_MOCK_HTTPS_PORT is already used by another process"
    fi
    stripe_mock_install
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    printf '\n===== %s launching stripe-mock =====\n' "$(date -Is)" >>"$STRIPE_MOCK_LOG"
    # Both listeners on the loopback only (its defaults listen on every interface).
    setsid nohup "$STRIPE_MOCK" -http-addr "127.0.0.1:$STRIPE_MOCK_PORT" \
      -https-addr "127.0.0.1:$STRIPE_MOCK_HTTPS_PORT" \
      </dev/null >>"$STRIPE_MOCK_LOG" 2>&1 9>&- &
    echo $! >"$STRIPE_MOCK_PID"
  fi
  local deadline=$((SECONDS + STRIPE_TIMEOUT))
  until stripe_mock_ready; do
    launched_alive "$STRIPE_MOCK_PID" || fail_part stripe-mock "the process exited" "$STRIPE_MOCK_LOG"
    (( SECONDS < deadline )) || fail_part stripe-mock "not answering within ${STRIPE_TIMEOUT}s" "$STRIPE_MOCK_LOG"
    sleep 0.2
  done
  log "stripe-mock ready on http://127.0.0.1:$STRIPE_MOCK_PORT (pid $(<"$STRIPE_MOCK_PID"))"
}

stripe_mock_stop() { stop_pid "$STRIPE_MOCK_PID" 10 "127.0.0.1:$STRIPE_MOCK_PORT" stripe-mock; }

stripe_mock_status() {
  local s=stopped
  if stripe_mock_running; then
    s="running (pid $(<"$STRIPE_MOCK_PID"), http://127.0.0.1:$STRIPE_MOCK_PORT, https 127.0.0.1:$STRIPE_MOCK_HTTPS_PORT)"
  fi
  printf 'stripe-mock %s\n' "$s"
}

stripe_mock_env() {
  printf 'export STRIPE_MOCK_API_BASE=http://127.0.0.1:%s\n' "$STRIPE_MOCK_PORT"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local started; started="$(now)"
  take_lock
  local kafka_was_up=0
  if kafka_running && kafka_ready; then
    kafka_was_up=1; log "kafka already running and answering"
  else
    kafka_launch            # boots in the background while the others start
  fi
  pg_start
  stripe_start
  stripe_mock_start
  (( kafka_was_up )) || kafka_wait
  log "stack up in $(elapsed "$started")s"
}

cmd_down() {
  take_lock
  # SIGTERM Kafka first (its controlled shutdown takes a few seconds), stop the rest meanwhile.
  local quiet=""
  if kafka_running; then
    log "stopping kafka (pid $(<"$KAFKA_PID"))"
    kill -TERM "$(<"$KAFKA_PID")" 2>/dev/null || true
    quiet=quiet
  fi
  stripe_stop
  stripe_mock_stop
  pg_stop
  kafka_stop "$quiet"             # waits for the exit (SIGKILL after 30 s)
}

cmd_status() {
  local k=stopped p=stopped s=stopped
  kafka_running && k="running (pid $(<"$KAFKA_PID"), 127.0.0.1:$KAFKA_PORT, SASL_SSL 127.0.0.1:$KAFKA_SASL_PORT, Kafka $KAFKA_VERSION)"
  pg_running && p="running (127.0.0.1:$PG_PORT, $PG_HOME/data)"
  stripe_running && s="running (pid $(<"$STRIPE_PID"), http://127.0.0.1:$STRIPE_PORT)"
  printf 'kafka       %s\npostgres    %s\nlocalstripe %s\n' "$k" "$p" "$s"
  stripe_mock_status
}

cmd_env() {
  cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB
export STRIPE_API_BASE=http://127.0.0.1:$STRIPE_PORT
export STRIPE_API_KEY=$STRIPE_KEY
EOF
  stripe_mock_env
}

# The settings of a client of the SASL_SSL listener (after `env`, they point the service at it).
cmd_env_sasl() {
  kafka_scram_known || die "$(kafka_scram_missing)"
  cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_PORT
export KAFKA_SECURITY_PROTOCOL=SASL_SSL
export KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export KAFKA_SASL_USERNAME=$KAFKA_SASL_USER
export KAFKA_SASL_PASSWORD=$(<"$KAFKA_SECURITY/sasl-password")
export KAFKA_SSL_CAFILE=$KAFKA_SECURITY/ca.pem
EOF
}

cmd_logs() {
  printf '%s\n' "$KAFKA_LOG" "$KAFKA_OUT" "$PG_LOG" "$STRIPE_LOG" "$STRIPE_MOCK_LOG"
}

cmd_reset() {
  cmd_down
  local d
  [[ -n "$STACK_DIR" && "$STACK_DIR" != / ]] || die "refusing to delete STACK_DIR='$STACK_DIR'"
  d="$PG_HOME"                 # the /var/tmp fallback (symlink already resolved)
  if [[ "$d" == /var/tmp/auto-topup-stack-pg-* ]]; then rm -rf "$d"; fi
  log "deleting $STACK_DIR (the jar cache in $STACK_CACHE_DIR is kept)"
  rm -rf "$STACK_DIR"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

case "${1:-}" in
  up)                  cmd_up ;;
  down)                cmd_down ;;
  status)              cmd_status ;;
  env)                 cmd_env ;;
  env-sasl)            cmd_env_sasl ;;
  logs)                cmd_logs ;;
  reset)               cmd_reset ;;
  start-kafka)         take_lock; kafka_start ;;
  stop-kafka)          take_lock; kafka_stop ;;
  restart-kafka)       take_lock; kafka_stop; kafka_start ;;
  reset-kafka)         take_lock; kafka_reset ;;
  start-postgres)      take_lock; pg_start ;;
  stop-postgres)       take_lock; pg_stop ;;
  restart-postgres)    take_lock; pg_stop; pg_start ;;
  start-localstripe)   take_lock; stripe_start ;;
  stop-localstripe)    take_lock; stripe_stop ;;
  restart-localstripe) take_lock; stripe_stop; stripe_start ;;
  install-stripe-mock) take_lock; stripe_mock_install ;;
  start-stripe-mock)   take_lock; stripe_mock_start ;;
  stop-stripe-mock)    take_lock; stripe_mock_stop ;;
  restart-stripe-mock) take_lock; stripe_mock_stop; stripe_mock_start ;;
  -h|--help|help)      usage ;;
  *)                   usage >&2; exit 2 ;;
esac
