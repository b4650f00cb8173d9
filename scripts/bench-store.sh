#!/usr/bin/env bash
# The gate's two stores side by side on loopback (issue 13 point 8): the embedded store and
# PostgreSQL, same gate, same configuration otherwise, in front of one console.
#
#   console   nginx, auth_basic over a password file of BENCH_STORE_USERS users ({PLAIN})
#   embedded  mfa-gate, basic mode, [store] path = a directory
#   postgres  mfa-gate, basic mode, [store] url = a private PostgreSQL cluster started here
#             (initdb/pg_ctl as nobody when run as root; default settings: fsync on,
#             synchronous_commit on; data directory under $TMPDIR, stopped at exit)
#
# The users are imported with known secrets (`mfa-gate user import --otpauth -`, through
# the embedded gate's admin socket), then moved to PostgreSQL (`mfa-gate store migrate`),
# so both stores hold the same users.
#
# Two measurements, each in alternating rounds (embedded, postgres, embedded, ...):
#   session check  wrk -t1 -c32 on / with a valid session cookie + Basic credentials
#                  (a fresh login before every run): req/s, p99, CPU µs/request of the gate
#                  and of the database (its postgres processes, /proc/PID/stat)
#   login rate     benches/login_rate.rs: N clients each doing whole logins (password
#                  step GET / -> 303, GET /.mfa/login for the CSRF token, POST /.mfa/verify
#                  with the TOTP code it computes itself), each login with a user whose
#                  current time step is unused: logins/s, p50/p99 of a whole login and of
#                  each of its three requests, failures (must be 0), CPU per login
# Prints the table and rewrites the section of BENCHMARKS.md between
# <!-- store-bench:start --> and <!-- store-bench:end --> (added before "## Findings and
# changes" the first time); scripts/bench.sh keeps that section when it rewrites the file.
# Needs: cargo, nginx, wrk, curl, PostgreSQL's server binaries (apt-get install -y nginx wrk
# curl postgresql), setpriv (util-linux) when run as root.
# Knobs (environment):
#   BENCH_STORE_ROUNDS          alternating rounds of each measurement      (default 3)
#   BENCH_STORE_USERS           users imported into both stores             (default 24000)
#   BENCH_STORE_DURATION        wrk -d of each measured session-check run   (default 10s)
#   BENCH_STORE_WARMUP          unrecorded wrk run before each one, 0 = none (default 2s)
#   BENCH_THREADS               wrk -t                                      (default 1)
#   BENCH_CONNECTIONS           wrk -c                                      (default 32)
#   BENCH_STORE_LOGIN_DURATION  seconds of each measured login run          (default 10)
#   BENCH_STORE_LOGIN_WARMUP    seconds of logins before the window, not counted (default 1)
#   BENCH_STORE_CLIENTS         concurrent login clients                    (default 32)
#   BENCH_STORE_SOURCES         client addresses (127.0.1.x) they spread over, 1 = all
#                               from 127.0.0.1 (one per-client attempt quota for all)
#                                                                           (default 32)
#   BENCH_STORE_IMPORT_JOBS     imports run at once                         (default 8)
#   BENCH_MAX_OTHER             % of the CPUs other processes may use in a run before it is
#                               redone (after waiting for a quiet machine)  (default 10)
#   BENCH_RETRIES               how often a disturbed run is redone         (default 2)
#   BENCH_IDLE_WAIT             seconds to wait for a quiet machine, each time (default 120)
#   BENCH_WAIT_BUDGET           seconds of such waiting in the whole run    (default 600)
#   BENCH_OUTPUT                the report                                  (default BENCHMARKS.md)
#   BENCH_SKIP_BUILD            1 = no cargo build; use the existing binaries
#   BENCH_GATE_BIN              the gate binary (default $CARGO_TARGET_DIR or target/, release)
#   BENCH_LOGIN_BIN             the load generator (default: built by `cargo bench --no-run`)
#   BENCH_STORE_PG_OPTIONS      more server options for the cluster, e.g. "-c synchronous_commit=off"
#                               (default: none; the settings used are written in the report)
#   PG_BIN                      PostgreSQL's bin directory (default: the newest
#                               /usr/lib/postgresql/*/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${BENCH_STORE_ROUNDS:-3}
USERS=${BENCH_STORE_USERS:-24000}
DURATION=${BENCH_STORE_DURATION:-10s}
WARMUP=${BENCH_STORE_WARMUP:-2s}
THREADS=${BENCH_THREADS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
LOGIN_DURATION=${BENCH_STORE_LOGIN_DURATION:-10}
LOGIN_WARMUP=${BENCH_STORE_LOGIN_WARMUP:-1}
CLIENTS=${BENCH_STORE_CLIENTS:-32}
SOURCES=${BENCH_STORE_SOURCES:-32}
IMPORT_JOBS=${BENCH_STORE_IMPORT_JOBS:-8}
PG_OPTIONS=${BENCH_STORE_PG_OPTIONS:-}
MAX_OTHER=${BENCH_MAX_OTHER:-10}
RETRIES=${BENCH_RETRIES:-2}
IDLE_WAIT=${BENCH_IDLE_WAIT:-120}
WAIT_BUDGET=${BENCH_WAIT_BUDGET:-600}
WAITED=0
OUTPUT=${BENCH_OUTPUT:-BENCHMARKS.md}
case $OUTPUT in /*) ;; *) OUTPUT=$ROOT/$OUTPUT ;; esac
NGINX=${NGINX:-/usr/sbin/nginx}
GATE_BIN=${BENCH_GATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mfa-gate}
LOGIN_BIN=${BENCH_LOGIN_BIN:-}
PG_BIN=${PG_BIN:-$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)}
CMDLINE="$(env | { grep -E '^(BENCH_[A-Z_]*|CARGO_TARGET_DIR|NGINX|PG_BIN)=' || true; } | sort | tr '\n' ' ')scripts/bench-store.sh"
MARKER=bench-console-5f2a # + newline = the 19-byte page
# The first SESSION_USERS users sign in for the wrk runs (a fresh session each run, so the
# gate never re-issues the cookie during one); they come first in the console's password
# file, like the one user of scripts/bench.sh. The login runs use all the others.
SESSION_USERS=16
START_MARK='<!-- store-bench:start -->'
END_MARK='<!-- store-bench:end -->'
STORES=(embedded postgres)

die() { echo "bench-store.sh: $*" >&2 && exit 1; }
# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"
for tool in "$NGINX" wrk curl awk sed base64 timeout xargs; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install -y nginx wrk curl)"
done
for tool in initdb pg_ctl postgres psql; do
    [ -x "$PG_BIN/$tool" ] || die "PostgreSQL's $tool is required (apt-get install -y postgresql), or set PG_BIN"
done
[ "$ROUNDS" -ge 1 ] || die "BENCH_STORE_ROUNDS must be at least 1"
[ "$USERS" -gt $((SESSION_USERS * 2)) ] || die "BENCH_STORE_USERS must be more than $((SESSION_USERS * 2))"
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) is required as root: PostgreSQL refuses root"
    AS_PG=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi

# ---------------------------------------------------------------------------------------
# Processes, cleanup, small helpers

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mfa-gate-bench-store.XXXXXX")
PIDS=()
PG_STARTED=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$PG_STARTED" = 1 ]; then
        (cd "$PG_DIR" && "${AS_PG[@]}" "$PG_BIN/pg_ctl" stop -w -m fast -D "$PG_DIR/data" >/dev/null 2>&1) ||
            (cd "$PG_DIR" && "${AS_PG[@]}" "$PG_BIN/pg_ctl" stop -w -m immediate -D "$PG_DIR/data" >/dev/null 2>&1) || true
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# nginx workers and PostgreSQL (as nobody) must reach their files; mktemp -d is 0700.
chmod 755 "$TMP"

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of the given pids (all threads)
    [ $# -gt 0 ] || { echo 0 && return; }
    local files=("${@/#//proc/}")
    awk '{ sub(/.*\) /, ""); s += $12 + $13 } END { print s + 0 }' "${files[@]/%//stat}" 2>/dev/null || echo 0
}
pg_ticks() { # "user system" ticks of every postgres process: the postmaster (with its exited children) and its children now
    local master files=()
    master=$(head -n1 "$PG_DIR/data/postmaster.pid")
    for pid in $(ps -o pid= --ppid "$master"); do files+=("/proc/$pid/stat"); done
    awk '{ sub(/.*\) /, ""); u += $12; s += $13; if (FNR == NR) { u += $14; s += $15 } } END { print u + 0, s + 0 }' \
        "/proc/$master/stat" "${files[@]}" 2>/dev/null ||
        awk '{ sub(/.*\) /, ""); print $12 + $14, $13 + $15 }' "/proc/$master/stat"
}
children_ticks_to() { # CPU ticks of this shell's finished children (wrk, the load generator), into $1
    times >"$TMP/times.txt" # (not in a $(…) subshell: its `times` would not see them)
    awk -v hz="$CLK_TCK" 'NR == 2 { t = 0
        for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, p, "m"); t += p[1] * 60 + p[2] }
        printf "%.0f\n", t * hz }' "$TMP/times.txt" >"$1"
}
step_now() { echo $(($(date +%s) / 30)); }

# ---------------------------------------------------------------------------------------
# Build

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    if [ -z "${BENCH_GATE_BIN:-}" ]; then
        echo "==> cargo build --release"
        cargo build --release --locked
    fi
    if [ -z "$LOGIN_BIN" ]; then
        echo "==> cargo bench --bench login_rate --no-run"
        cargo bench --locked --bench login_rate --no-run --message-format=json >"$TMP/cargo-bench.json"
    fi
fi
if [ -z "$LOGIN_BIN" ]; then
    if [ -f "$TMP/cargo-bench.json" ]; then
        LOGIN_BIN=$(sed -n 's/.*"executable":"\([^"]*login_rate-[^"]*\)".*/\1/p' "$TMP/cargo-bench.json" | tail -n1)
    else # BENCH_SKIP_BUILD=1: the newest one built
        LOGIN_BIN=$(find "${CARGO_TARGET_DIR:-$ROOT/target}/release/deps" -maxdepth 1 -type f -executable \
            -name 'login_rate-*' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n1 | cut -d' ' -f2-)
    fi
fi
[ -x "$GATE_BIN" ] || die "$GATE_BIN is missing (build it, or set BENCH_GATE_BIN)"
[ -x "${LOGIN_BIN:-/nonexistent}" ] || die "the load generator is missing (cargo bench --bench login_rate --no-run, or set BENCH_LOGIN_BIN)"
STARTED=$(date +%s)

# ---------------------------------------------------------------------------------------
# PostgreSQL: a private cluster with the default settings

PG_DIR=$TMP/pg
PG_PORT=$(free_port)
mkdir -p "$PG_DIR/data" "$PG_DIR/sock"
[ "${#AS_PG[@]}" = 0 ] || chown -R 65534:65534 "$PG_DIR"
PG_VERSION=$("$PG_BIN/postgres" --version | awk '{print $3}')
echo "==> PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT ($PG_DIR)"
(cd "$PG_DIR" && "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" --auth=trust -U postgres -E UTF8 \
    --locale=C >"$PG_DIR/initdb.log" 2>&1) || { cat "$PG_DIR/initdb.log" >&2 && die "initdb failed"; }
(cd "$PG_DIR" && "${AS_PG[@]}" "$PG_BIN/pg_ctl" start -w -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$PG_DIR/sock' -c shared_preload_libraries=pg_stat_statements $PG_OPTIONS" \
    >/dev/null 2>&1) ||
    { cat "$PG_DIR/postgres.log" >&2 && die "PostgreSQL did not start"; }
PG_STARTED=1
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
psql -d postgres -c 'CREATE DATABASE mfa_gate'
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/mfa_gate?sslmode=disable"
PG_SETTINGS=$(psql -d postgres -At -F= -c "SELECT name, current_setting(name) FROM pg_settings
    WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers',
                   'wal_level', 'max_connections', 'checkpoint_timeout', 'max_wal_size', 'commit_delay')
    ORDER BY name" | tr '\n' ' ')
PG_FS=$(df -PT "$PG_DIR/data" | awk 'NR == 2 {print $2 " (" $1 ")"}')

# ---------------------------------------------------------------------------------------
# The users and the console

echo "==> $USERS users (names, passwords, secrets)"
USERS_FILE=$TMP/users.txt
"$LOGIN_BIN" users --count "$USERS" --out "$USERS_FILE"
CONSOLE_DIR=$TMP/console
CONSOLE_PORT=$(free_port)
mkdir -p "$CONSOLE_DIR/www"
echo "$MARKER" >"$CONSOLE_DIR/www/index.html"
# {PLAIN}: the cheapest password check nginx has; nginx reads the file line by line on
# every request, so the session users come first and a login user is ~half-way on average.
awk '{ printf "%s:{PLAIN}%s\n", $1, $2 }' "$USERS_FILE" >"$CONSOLE_DIR/htpasswd"
chmod 755 "$CONSOLE_DIR" "$CONSOLE_DIR/www"
chmod 644 "$CONSOLE_DIR"/www/* "$CONSOLE_DIR/htpasswd"
NGINX_USER=""
[ "$(id -u)" -eq 0 ] && NGINX_USER="user root;"
cat >"$CONSOLE_DIR/nginx.conf" <<EOF
daemon off; master_process on; $NGINX_USER worker_processes auto;
pid "$CONSOLE_DIR/nginx.pid"; error_log "$CONSOLE_DIR/error.log" warn;
events { worker_connections 1024; }
http {
    access_log off; keepalive_requests 100000;
    client_body_temp_path "$CONSOLE_DIR/client_body"; proxy_temp_path "$CONSOLE_DIR/proxy";
    fastcgi_temp_path "$CONSOLE_DIR/fastcgi"; uwsgi_temp_path "$CONSOLE_DIR/uwsgi"; scgi_temp_path "$CONSOLE_DIR/scgi";
    types { text/html html; } default_type application/octet-stream;
    server {
        listen 127.0.0.1:$CONSOLE_PORT; server_name _;
        root "$CONSOLE_DIR/www"; index index.html;
        auth_basic "Bench console"; auth_basic_user_file "$CONSOLE_DIR/htpasswd";
    }
}
EOF
"$NGINX" -t -q -p "$CONSOLE_DIR" -e "$CONSOLE_DIR/error.log" -c "$CONSOLE_DIR/nginx.conf" || die "nginx rejected its configuration"
"$NGINX" -p "$CONSOLE_DIR" -e "$CONSOLE_DIR/error.log" -c "$CONSOLE_DIR/nginx.conf" >"$CONSOLE_DIR/stdout.log" 2>&1 &
CONSOLE_MASTER=$!
PIDS+=("$CONSOLE_MASTER")
echo "==> console (nginx + auth_basic, $USERS users) on 127.0.0.1:$CONSOLE_PORT"
wait_http "$CONSOLE_PORT" "console nginx" "$CONSOLE_DIR/error.log"
# shellcheck disable=SC2207
CONSOLE_PIDS=("$CONSOLE_MASTER" $(ps -o pid= --ppid "$CONSOLE_MASTER"))

# ---------------------------------------------------------------------------------------
# The two gates: one configuration but for [store]

KEY_FILE=$TMP/master.key
declare -A PORT DIR CONF GATE_PID
gate_conf() { # $1 store name: the configuration file's text
    local store
    if [ "$1" = embedded ]; then
        store="path = \"${DIR[$1]}/store\""
    else
        store="url = \"$PG_URL\""
    fi
    cat <<EOF
[server]
listen = "127.0.0.1:${PORT[$1]}"
admin_socket = "${DIR[$1]}/admin.sock"
[store]
$store
key_file = "$KEY_FILE"
[totp]
issuer = "bench"
# Raised so that neither the per-client attempt quota nor the caps on logins in progress
# refuse the load (defaults: 30/min, 10 per user, 10,000 in all).
[throttle]
per_ip = "10000000/min"
[session]
max_pending_per_user = 100
max_pending = 1000000
# Like nginx's access_log off: no line per request.
[log]
access = false
[[site]]
name = "console"
hosts = ["127.0.0.1", "localhost"]
upstream = "http://127.0.0.1:$CONSOLE_PORT"
first_factor = { mode = "basic", probe_path = "/" }
EOF
}
for s in "${STORES[@]}"; do
    PORT[$s]=$(free_port)
    DIR[$s]=$TMP/gate-$s
    CONF[$s]=${DIR[$s]}/mfa-gate.toml
    mkdir -p "${DIR[$s]}"
    gate_conf "$s" >"${CONF[$s]}"
    "$GATE_BIN" check-config "${CONF[$s]}" >/dev/null
done
start_gate() { # $1 store
    local s=$1
    echo "==> mfa-gate ($s store) on 127.0.0.1:${PORT[$s]}"
    "$GATE_BIN" serve --config "${CONF[$s]}" >>"${DIR[$s]}/stdout.log" 2>>"${DIR[$s]}/gate.log" &
    GATE_PID[$s]=$!
    PIDS+=("${GATE_PID[$s]}")
    wait_http "${PORT[$s]}" "mfa-gate ($s)" "${DIR[$s]}/gate.log"
}
stop_gate() { # $1 store
    kill -TERM "${GATE_PID[$1]}"
    wait "${GATE_PID[$1]}" 2>/dev/null || true
}

# Import through the embedded gate's admin socket, then move everything to PostgreSQL.
start_gate embedded
# shellcheck disable=SC2016 # the single-quoted script is expanded by the sh xargs runs
import_users() { # $1 first line, $2 last line of the users file
    sed -n "$1,$2p" "$USERS_FILE" | awk '{print $1, $3}' |
        GATE_BIN=$GATE_BIN CONF=${CONF[embedded]} xargs -P "$IMPORT_JOBS" -n 2 sh -c \
            'printf "otpauth://totp/bench:%s?secret=%s&issuer=bench\n" "$1" "$2" |
                "$GATE_BIN" user import "console/$1" --otpauth - --config "$CONF" >/dev/null' _ ||
        die "user import failed"
}
echo "==> mfa-gate user import: $USERS users ($IMPORT_JOBS at a time)"
T0=$(date +%s.%N)
import_users 1 "$SESSION_USERS"
# An imported step counts as used: the first sign-in takes the next step's code.
SESSION_STEP=$(($(step_now) + 1))
import_users $((SESSION_USERS + 1)) "$USERS"
LOGIN_STEP=$(($(step_now) + 1))
IMPORT_SECS=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo "    $IMPORT_SECS s"
stop_gate embedded
echo "==> mfa-gate store migrate --to PostgreSQL"
T0=$(date +%s.%N)
"$GATE_BIN" store migrate --from "${DIR[embedded]}/store" --to "$PG_URL" --key-file "$KEY_FILE" >"$TMP/migrate.log" 2>&1 ||
    { cat "$TMP/migrate.log" >&2 && die "store migrate failed"; }
MIGRATE_SECS=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "    $(grep -m1 '^moved' "$TMP/migrate.log" | sed 's/ from .*//') ($MIGRATE_SECS s)"
start_gate embedded
start_gate postgres
[ "$(psql -d mfa_gate -At -c 'SELECT count(*) FROM mfa_gate_users WHERE secret IS NOT NULL')" = "$USERS" ] ||
    die "PostgreSQL does not hold the $USERS enrolled users"
# What the database does per login: statements (pg_stat_statements) and WAL (pg_stat_wal).
psql -d mfa_gate -c 'CREATE EXTENSION pg_stat_statements'
pg_stats_reset() {
    psql -d mfa_gate -At -c "SELECT pg_stat_statements_reset()" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
}
pg_stats_read() { # $1 file prefix: the statements and the WAL counters since the reset
    psql -d mfa_gate -At -F'|' -c "SELECT calls, total_exec_time, regexp_replace(query, '\s+', ' ', 'g')
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'mfa_gate')
          AND query NOT LIKE '%pg_stat_%' ORDER BY total_exec_time DESC" >"$1-statements.txt"
    psql -d mfa_gate -At -F' ' -c "SELECT wal_records, wal_bytes, wal_write, wal_sync FROM pg_stat_wal" >"$1-wal.txt"
}

# ---------------------------------------------------------------------------------------
# Measurements

RESULTS=$TMP/results.txt # one line per kept run: kind round store key=value...
: >"$RESULTS"
SESSION_NAME="" SESSION_PW="" SESSION_COOKIE=""
session_login() { # $1 store: a fresh session for the next session user
    local out
    out=$("$LOGIN_BIN" session --target "127.0.0.1:${PORT[$1]}" --users "$USERS_FILE" \
        --state "$TMP/state-session-$1" --take "$SESSION_USERS" --not-before-step "$SESSION_STEP") ||
        die "session login on the $1 store failed"
    read -r SESSION_NAME SESSION_PW SESSION_COOKIE <<<"$out"
    case $SESSION_COOKIE in mfa_session=?*) ;; *) die "no session cookie from the $1 store: $out" ;; esac
}
run_wrk() { # $1 store, $2 duration, $3 output, rest = extra wrk args
    local s=$1 duration=$2 out=$3
    shift 3
    local auth
    auth="Basic $(printf '%s:%s' "$SESSION_NAME" "$SESSION_PW" | base64 -w0)"
    timeout --kill-after=5 $(($(duration_secs "$duration") + 30)) \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 5s -H "Authorization: $auth" \
        -H "Cookie: $SESSION_COOKIE" "$@" "http://127.0.0.1:${PORT[$s]}/" >"$out" ||
        die "wrk failed against the $s store: $(cat "$out")"
}
parse_wrk() { # $1 = wrk output: "rps p99_ms requests non2xx3xx socket_errors"
    awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000; return v * 1000 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" { p99 = ms($2) }
        /requests in/ { n = $1 }
        /Non-2xx or 3xx/ { non = $NF }
        /Socket errors/ { gsub(/[^0-9]+/, " "); k = split($0, a, " "); for (i = 1; i <= k; i++) se += a[i] }
        END { printf "%s %.3f %d %d %d\n", rps, p99, n, non, se }' "$1"
}

field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"; } # $1 key, $2 "key=value …" line
per() { awk -v d="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }'; } # ticks / n, µs

# One measured run with the CPU time of each party around it; appends the kept try to
# $RESULTS. $1 kind (session|login), $2 round, $3 store.
measure() {
    local kind=$1 round=$2 s=$3 tries=0 best=999 kept="" out line
    local g_b g_a p_b p_a pu_b pu_a ps_b ps_a n_b n_a c_b c_a sys_b sys_a other n
    while :; do
        tries=$((tries + 1))
        out=$TMP/$kind-$s-$round.try
        if [ "$kind" = session ]; then
            session_login "$s"
            if [ "$(duration_secs "$WARMUP")" != 0 ]; then run_wrk "$s" "$WARMUP" "$TMP/warmup.txt"; fi
        fi
        echo "==> round $round: $kind, $s store"
        [ "$s" != postgres ] || pg_stats_reset
        g_b=$(cpu_ticks "${GATE_PID[$s]}") n_b=$(cpu_ticks "${CONSOLE_PIDS[@]}")
        read -r pu_b ps_b < <(pg_ticks)
        children_ticks_to "$TMP/children-before"
        sys_b=$(system_ticks)
        if [ "$kind" = session ]; then
            run_wrk "$s" "$DURATION" "$out" --latency
        else
            "$LOGIN_BIN" run --target "127.0.0.1:${PORT[$s]}" --users "$USERS_FILE" \
                --state "$TMP/state-login-$s" --skip "$SESSION_USERS" --clients "$CLIENTS" \
                --sources "$SOURCES" --warmup "$LOGIN_WARMUP" --duration "$LOGIN_DURATION" \
                --not-before-step "$LOGIN_STEP" >"$out" 2>"$out.err" ||
                die "the load generator failed on the $s store: $(cat "$out.err")"
        fi
        sys_a=$(system_ticks)
        children_ticks_to "$TMP/children-after"
        c_a=$(cat "$TMP/children-after") c_b=$(cat "$TMP/children-before")
        g_a=$(cpu_ticks "${GATE_PID[$s]}") n_a=$(cpu_ticks "${CONSOLE_PIDS[@]}")
        read -r pu_a ps_a < <(pg_ticks)
        p_a=$((pu_a + ps_a)) p_b=$((pu_b + ps_b))
        # Busy CPU outside the gates, PostgreSQL, nginx, wrk and the load generator, in % of
        # all CPUs (the idle gate's few ticks count as other load).
        other=$(awk -v sb="$sys_b" -v sa="$sys_a" \
            -v ours=$((g_a - g_b + p_a - p_b + n_a - n_b + c_a - c_b)) \
            'BEGIN { split(sb, x, " "); split(sa, y, " "); t = y[2] - x[2]; o = (y[1] - x[1]) - ours
                     if (o < 0) o = 0; if (t > 0) printf "%.0f", 100 * o / t; else print 0 }')
        if [ "$kind" = session ]; then
            read -r rps p99 n non se < <(parse_wrk "$out")
            [ "${n:-0}" -gt 0 ] || die "could not read wrk's output: $(cat "$out")"
            line="rps=$rps p99_ms=$p99 requests=$n non2xx=$non socket_errors=$se"
            echo "    $rps req/s, p99 $p99 ms, other CPU load $other%"
        else
            line=$(cat "$out")
            [ "$(field logins "$line")" -gt 0 ] || die "no login completed on the $s store: $line $(cat "$out.err")"
            # The CPU was spent on every login of the run, the warm-up's and the edges' too.
            n=$(($(field logins "$line") + $(field outside "$line")))
            echo "    $line"
            echo "    other CPU load $other%"
            [ ! -s "$out.err" ] || sed 's/^/    /' "$out.err"
        fi
        line="$kind $round $s $line gate_us=$(per "$((g_a - g_b))" "$n") db_us=$(per "$((p_a - p_b))" "$n")"
        line+=" db_kernel_us=$(per "$((ps_a - ps_b))" "$n")"
        line+=" console_us=$(per "$((n_a - n_b))" "$n") client_us=$(per "$((c_a - c_b))" "$n")"
        line+=" other=$other"
        if [ "$other" -lt "$best" ]; then
            best=$other kept=$line
            mv "$out" "$TMP/$kind-$s-$round.txt"
            [ "$s" != postgres ] || { pg_stats_read "$TMP/pg-$kind-$round" && echo "$n" >"$TMP/pg-$kind-$round-count.txt"; }
        fi
        if [ "$other" -le "$MAX_OTHER" ] || [ "$tries" -gt "$RETRIES" ]; then break; fi
        echo "    disturbed by other processes: waiting for a quiet machine, then again"
        wait_quiet || { echo "    still busy: no more tries" && break; }
    done
    echo "$kept tries=$tries" >>"$RESULTS"
}

echo "==> waiting for a quiet machine (at most $IDLE_WAIT s)"
wait_quiet || true
IDLE_BUSY=$BUSY
echo "    CPU busy before measuring: $IDLE_BUSY%"
# A round: both session checks, then both login runs. A store's login runs are then over
# 30 s apart, so each one has the whole pool of users for the time steps it falls in.
for round in $(seq "$ROUNDS"); do
    for s in "${STORES[@]}"; do measure session "$round" "$s"; done
    for s in "${STORES[@]}"; do measure login "$round" "$s"; done
done
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------------------------------
# The report

val() { # $1 kind, $2 store, $3 key: the values over the rounds, one a line
    awk -v k="$1" -v s="$2" -v key="$3" '$1 == k && $3 == s {
        for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$RESULTS"
}
sum() { awk '{ s += $1 } END { print s + 0 }'; }
med() { val "$1" "$2" "$3" | median; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "?") print "?"; else printf f, v }'; }
row() { # $1 label, $2 kind, $3 key, $4 printf format, $5 = 1: no ratio
    local e p
    e=$(med "$2" embedded "$3") p=$(med "$2" postgres "$3")
    printf '| %s | %s | %s | %s |\n' "$1" "$(fmt "$e" "$4")" "$(fmt "$p" "$4")" \
        "$([ "${5:-0}" = 1 ] && echo — || echo "$(div "$p" "$e")×")"
}
TABLE=$(
    echo "| | embedded store | PostgreSQL | PostgreSQL ÷ embedded |"
    echo "|---|---:|---:|---:|"
    printf '| **session check**, req/s | %s | %s | %s× |\n' "$(commas "$(med session embedded rps)")" \
        "$(commas "$(med session postgres rps)")" "$(div "$(med session postgres rps)" "$(med session embedded rps)")"
    row "session check, p99 ms" session p99_ms "%.2f"
    row "session check, gate CPU µs/request" session gate_us "%.1f"
    printf '| session check, database CPU µs/request (in the kernel) | — | %s (%s) | — |\n' "$(fmt "$(med session postgres db_us)" "%.1f")" "$(fmt "$(med session postgres db_kernel_us)" "%.1f")"
    row "**login rate**, logins/s ($CLIENTS clients)" login rate "%.0f"
    row "login, p50 ms (whole login: 3 requests)" login p50_ms "%.1f"
    row "login, p99 ms" login p99_ms "%.1f"
    row "… password step (GET / → 303), p50 / p99 ms" login password_p50_ms "%.2f" 1 |
        sed "s/ | \([0-9.?]*\) | \([0-9.?]*\) | — |$/ | \1 \/ $(fmt "$(med login embedded password_p99_ms)" "%.2f") | \2 \/ $(fmt "$(med login postgres password_p99_ms)" "%.2f") | — |/"
    row "… login page (GET /.mfa/login), p50 / p99 ms" login page_p50_ms "%.2f" 1 |
        sed "s/ | \([0-9.?]*\) | \([0-9.?]*\) | — |$/ | \1 \/ $(fmt "$(med login embedded page_p99_ms)" "%.2f") | \2 \/ $(fmt "$(med login postgres page_p99_ms)" "%.2f") | — |/"
    row "… code (POST /.mfa/verify → 303), p50 / p99 ms" login code_p50_ms "%.2f" 1 |
        sed "s/ | \([0-9.?]*\) | \([0-9.?]*\) | — |$/ | \1 \/ $(fmt "$(med login embedded code_p99_ms)" "%.2f") | \2 \/ $(fmt "$(med login postgres code_p99_ms)" "%.2f") | — |/"
    printf '| failed logins (all runs) | %s | %s | — |\n' "$(val login embedded failures | sum)" "$(val login postgres failures | sum)"
    row "login, gate CPU µs/login" login gate_us "%.0f"
    printf '| login, database CPU µs/login (in the kernel) | — | %s (%s) | — |\n' "$(fmt "$(med login postgres db_us)" "%.0f")" "$(fmt "$(med login postgres db_kernel_us)" "%.0f")"
    row "login, console (nginx) CPU µs/login" login console_us "%.0f"
    row "login, load generator CPU µs/login" login client_us "%.0f"
)
RUNS=$(
    echo "| measurement | round | store | rate | p50 ms | p99 ms | gate µs | database µs | console µs | client µs | failures | other CPU load | tries |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '{ delete v; for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        rate = $1 == "session" ? v["rps"] : v["rate"]
        printf "| %s | %s | %s | %.0f/s | %s | %.2f | %.1f | %s | %.1f | %.1f | %s | %s%% | %s |\n", $1, $2, $3, rate,
            ($1 == "session" ? "—" : sprintf("%.2f", v["p50_ms"])), v["p99_ms"], v["gate_us"],
            ($3 == "embedded" ? "—" : sprintf("%.1f", v["db_us"])), v["console_us"], v["client_us"],
            ($1 == "session" ? v["non2xx"] + v["socket_errors"] : v["failures"]), v["other"], v["tries"] }' "$RESULTS"
)
# The database's side of the last round's PostgreSQL runs.
pg_summary() { # $1 kind: "S statements and E ms of execution per unit, WAL: …"
    local f=$TMP/pg-$1-$ROUNDS
    [ -s "$f-count.txt" ] || { echo "not recorded" && return; }
    awk -F'|' -v n="$(cat "$f-count.txt")" -v wal="$(cat "$f-wal.txt")" '
        { calls += $1; t += $2 }
        END { split(wal, w, " ")
            printf "%.2f statements and %.3f ms of statement execution; WAL: %.1f records, %.0f bytes, %.2f writes, %.2f fsyncs",
                calls / n, t / n, w[1] / n, w[2] / n, w[3] / n, w[4] / n }' "$f-statements.txt"
}
PG_LOGIN_STATEMENTS=""
if [ -s "$TMP/pg-login-$ROUNDS-count.txt" ]; then
    PG_LOGIN_STATEMENTS=$(
        echo "| statement (pg_stat_statements) | calls per login | mean ms | share of execution time |"
        echo "|---|---:|---:|---:|"
        awk -F'|' -v n="$(cat "$TMP/pg-login-$ROUNDS-count.txt")" '
            { c[NR] = $1; t[NR] = $2; q = $0; sub(/^[^|]*\|[^|]*\|/, "", q); gsub(/\|/, "\\|", q)
              if (length(q) > 120) q = substr(q, 1, 117) "…"; s[NR] = q; total += $2 }
            END { for (i = 1; i <= NR && i <= 12; i++)
                printf "| `%s` | %.2f | %.3f | %.0f %% |\n", s[i], c[i] / n, (c[i] > 0 ? t[i] / c[i] : 0), (total > 0 ? 100 * t[i] / total : 0) }' \
            "$TMP/pg-login-$ROUNDS-statements.txt"
    )
fi

PROBLEMS=""
for s in "${STORES[@]}"; do
    n=$(val login "$s" failures | sum)
    [ "$n" = 0 ] || PROBLEMS+="- **$s**: $n failed login(s); see the load generator's messages in the script's output."$'\n'
    n=$(($(val session "$s" non2xx | sum) + $(val session "$s" socket_errors | sum)))
    [ "$n" = 0 ] || PROBLEMS+="- **$s**: $n non-2xx/3xx answers or socket errors in the session-check runs."$'\n'
    n=$(awk -v s="$s" -v m="$MAX_OTHER" '$3 == s { for (i = 4; i <= NF; i++) if ($i ~ /^other=/) { split($i, kv, "="); if (kv[2] > m) c++ } } END { print c + 0 }' "$RESULTS")
    [ "$n" = 0 ] || PROBLEMS+="- **$s**: $n run(s) kept with more than $MAX_OTHER% other CPU load; those numbers are disturbed."$'\n'
    n=$(val login "$s" starved_s | awk '$1 > 0 { c++ } END { print c + 0 }')
    [ "$n" = 0 ] || PROBLEMS+="- **$s**: $n login run(s) ran out of users whose time step was unused and waited for the next step (the rate is understated): raise BENCH_STORE_USERS."$'\n'
    n=$(grep -cE 'WARN|ERROR' "${DIR[$s]}/gate.log" || true)
    [ "$n" = 0 ] || PROBLEMS+="- the gate on the $s store logged $n WARN/ERROR line(s), e.g.: \`$(grep -m1 -E 'WARN|ERROR' "${DIR[$s]}/gate.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200)\`"$'\n'
done
STARVED="$(val login embedded starved_s | sum) s on the embedded store, $(val login postgres starved_s | sum) s on PostgreSQL"
CPU_MODEL=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock benches 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
MIGRATED=$(grep -m1 '^moved' "$TMP/migrate.log" | sed 's/ from .*//')

SECTION=$(
    cat <<EOF
$START_MARK
## The embedded store and PostgreSQL side by side

Measured by \`scripts/bench-store.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the measurements took $ELAPSED s (after the build), all on 127.0.0.1.

- Command: \`$CMDLINE\`
- Commit: \`$COMMIT\`, release build. Machine: $(nproc) CPUs (${CPU_MODEL:-unknown}), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}'); CPU busy just before the first run: $IDLE_BUSY%.
- PostgreSQL $PG_VERSION, a private cluster made by \`initdb\` with its defaults$([ -z "$PG_OPTIONS" ] || echo " and \`$PG_OPTIONS\`") (plus \`pg_stat_statements\` loaded), on TCP loopback, data directory on $PG_FS: $PG_SETTINGS$([ -n "$PG_OPTIONS" ] || echo "— durable commits: each commit waits for its WAL flush"). The gate's pool: 16 connections (the default).
- Both gates: the same configuration but for \`[store]\` — basic mode in front of nginx (\`auth_basic\`, a \`{PLAIN}\` password file of $(commas "$USERS") users), \`[log] access = false\`, and, so that the throttle does not refuse the load, \`[throttle] per_ip = "10000000/min"\`, \`[session] max_pending_per_user = 100\`, \`max_pending = 1000000\` (defaults 30/min, 10, 10,000).
- Users: $(commas "$USERS") imported with known secrets (\`mfa-gate user import console/NAME --otpauth -\` through the embedded gate's admin socket, $IMPORT_JOBS at a time: $IMPORT_SECS s), then moved to PostgreSQL by \`mfa-gate store migrate\` ($MIGRATED, $MIGRATE_SECS s).

### Results (medians of $ROUNDS alternating rounds)

$TABLE

Per run:

$RUNS

EOF
    if [ -n "$PROBLEMS" ]; then printf '**Problems seen in this run**\n\n%s\n' "$PROBLEMS"; fi
    cat <<EOF
### What the database does (round $ROUNDS's PostgreSQL runs)

- Per session check: $(pg_summary session).
- Per login: $(pg_summary login). *Fsyncs* are the WAL flushes of commits; concurrent commits share one (group commit).

$PG_LOGIN_STATEMENTS

### How it is measured

- **Session check**: \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout 5s --latency -H 'Authorization: Basic …' -H 'Cookie: mfa_session=…' URL/\` after a $WARMUP warm-up, each run with a session from a fresh login (so the gate never re-issues the cookie during a run), the console answering a 19-byte page. On PostgreSQL each request reads the user's state and the session's revocation in one query (README, *Several gates on one database*).
- **Login rate**: \`benches/login_rate.rs\` (\`cargo bench --bench login_rate --no-run\`, then \`login_rate run\`): $CLIENTS clients, each one keep-alive connection from its own address (127.0.1.1–$SOURCES: $SOURCES per-client attempt quotas, as people on their own machines; \`BENCH_STORE_SOURCES=1\` puts them all on 127.0.0.1), loop over whole logins: \`GET /\` with Basic credentials → 303 and the pending cookie (the gate probes the console with the password), \`GET /.mfa/login\` → 200 and the CSRF token, \`POST /.mfa/verify\` with the code the generator computes (RFC 6238, HMAC-SHA1) → 303 and the session cookie. Each login takes the next user whose current 30 s step is unused (round robin over $(commas $((USERS - SESSION_USERS))) users in a fixed shuffled order, kept across runs); a login whose user would repeat a step waits for the next step (waited: ${STARVED}). Counted: logins that began and ended inside the $LOGIN_DURATION s window after a $LOGIN_WARMUP s warm-up; a failure is any other status, a missing cookie or form, in or out of the window. Each client's first login is also checked with a \`GET /\` through the new session.
- **CPU per request or login**: user + system time (\`/proc/PID/stat\`, $CLK_TCK Hz ticks) over the run, divided by the requests (wrk's count) or by every login completed in the run (the warm-up's and those ending after the window too): the gate process; the database = the postmaster, its children now and its exited children (cutime); the console nginx (master + workers); the client (wrk or the load generator).
- Other CPU load: busy CPU outside these processes during a run, in % of all CPUs; a run above $MAX_OTHER% is redone (up to $RETRIES times) after waiting for a quiet machine ($WAITED s were spent waiting), and the least disturbed try is kept.
- The console's own cost is part of every login: nginx reads its password file line by line on each request (its \`auth_basic\` has no index), so a login's password probe scans half of the $(commas "$USERS") lines on average (the users are taken in shuffled order, so every run pays the same on average) — the *console* column, the same work for both stores. Logins/s is a figure of the whole machine; the CPU columns say which party spends what.
- The two gates, nginx, PostgreSQL and the client share the $(nproc) CPUs: CPU one party spends is throughput another loses. Absolute rates move between runs (±20 % in \`scripts/bench.sh\`'s runs); compare the ratios of one run.
$END_MARK
EOF
)

# Rewrite the section in place, or add it before the hand-written findings (or at the end).
printf '%s\n' "$SECTION" >"$TMP/section.md"
if [ -f "$OUTPUT" ] && grep -qxF "$START_MARK" "$OUTPUT"; then
    awk -v start="$START_MARK" -v end="$END_MARK" -v file="$TMP/section.md" '
        $0 == start { while ((getline line < file) > 0) print line; skip = 1; next }
        $0 == end { skip = 0; next }
        !skip' "$OUTPUT" >"$TMP/out.md"
elif [ -f "$OUTPUT" ] && grep -q '^## Findings and changes' "$OUTPUT"; then
    awk -v file="$TMP/section.md" '
        /^## Findings and changes/ && !done { while ((getline line < file) > 0) print line; print ""; done = 1 }
        { print }' "$OUTPUT" >"$TMP/out.md"
else
    { [ ! -f "$OUTPUT" ] || { cat "$OUTPUT" && echo; }; cat "$TMP/section.md"; } >"$TMP/out.md"
fi
cat "$TMP/out.md" >"$OUTPUT"

printf '\n%s\n\n%s\n' "$TABLE" "$RUNS"
[ -z "$PROBLEMS" ] || printf '\nProblems:\n%s' "$PROBLEMS"
printf '\nMeasurements took %s s. Wrote the store section of %s\n' "$ELAPSED" "$OUTPUT"
