#!/usr/bin/env bash
# Side-by-side loopback benchmark (issue 11): one upstream, three ways to reach it.
#
#   direct  wrk -> console            (nginx: 19 bytes at /, a 1 MiB file, auth_basic)
#   nginx   wrk -> nginx reverse proxy (keep-alive upstream) -> console
#   gate    wrk -> mfa-gate, basic mode, a real session (cookie + Basic) -> console
#
# Rounds alternate the targets (direct, nginx, gate, direct, ...); a target's turn is
# [warm-up] -> measured run on / -> status audit on / -> measured 1 MiB run. Reported: the
# median over the rounds of req/s, p99, CPU µs/request of the target's own processes
# (/proc/PID/stat), 1 MiB MiB/s, and memory idle after start and after the load. Prints
# the table and writes BENCHMARKS.md (how each number is taken is written there), keeping
# the hand-written section "## Findings and changes" at the end of the existing file and
# the stores' section scripts/bench-store.sh writes (between its <!-- store-bench --> markers).
# Needs: cargo, nginx, wrk, oathtool, curl (apt-get install -y nginx wrk oathtool curl).
# Knobs (environment):
#   BENCH_ROUNDS           alternating rounds                        (default 3)
#   BENCH_DURATION         wrk -d of each measured run on /          (default 10s)
#   BENCH_BIG_DURATION     wrk -d of each measured 1 MiB run         (default 5s)
#   BENCH_THREADS          wrk -t                                    (default 1)
#   BENCH_CONNECTIONS      wrk -c, both paths                        (default 32)
#   BENCH_WARMUP           unrecorded run on / before each turn, 0 = none (default 2s)
#   BENCH_AUDIT            status-counting run on / per turn, 0 = none   (default 2s)
#   BENCH_MAX_OTHER        % of the CPUs other processes may use in a run before it is
#                          redone (after waiting for a quiet machine)     (default 10)
#   BENCH_RETRIES          how often a disturbed run is redone       (default 2)
#   BENCH_IDLE_WAIT        seconds to wait for a quiet machine, each time (default 120)
#   BENCH_WAIT_BUDGET      seconds of such waiting in the whole run  (default 600)
#   BENCH_OUTPUT           the report                                (default BENCHMARKS.md)
#   BENCH_SKIP_BUILD       1 = no cargo build; use the existing binary
#   BENCH_GATE_BIN         the gate binary (default $CARGO_TARGET_DIR or target/, release)
#   BENCH_PROFILE          1 = after the rounds, one run per target under `perf stat` and
#                          one under `strace -c -f`: context switches and syscalls per
#                          request (needs perf and strace); 0 = none  (default 1)
#   BENCH_CALLGRIND        1 = at the end, the gate (one worker) and a copy of the nginx
#                          proxy (one process) under valgrind's callgrind for a fixed
#                          number of requests: instructions per request in user space,
#                          repeatable whatever else runs (needs valgrind); 0 = none (default 0)
#   BENCH_CALLGRIND_SECONDS   length of each counted callgrind run  (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
BIG_DURATION=${BENCH_BIG_DURATION:-5s}
THREADS=${BENCH_THREADS:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
WARMUP=${BENCH_WARMUP:-2s}
AUDIT=${BENCH_AUDIT:-2s}
MAX_OTHER=${BENCH_MAX_OTHER:-10}
RETRIES=${BENCH_RETRIES:-2}
IDLE_WAIT=${BENCH_IDLE_WAIT:-120}
WAIT_BUDGET=${BENCH_WAIT_BUDGET:-600}
WAITED=0
OUTPUT=${BENCH_OUTPUT:-BENCHMARKS.md}
PROFILE=${BENCH_PROFILE:-1}
CALLGRIND=${BENCH_CALLGRIND:-0}
CALLGRIND_SECONDS=${BENCH_CALLGRIND_SECONDS:-10}
case $OUTPUT in /*) ;; *) OUTPUT=$ROOT/$OUTPUT ;; esac
NGINX=${NGINX:-/usr/sbin/nginx}
GATE_BIN=${BENCH_GATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mfa-gate}
CMDLINE="$(env | { grep -E '^(BENCH_[A-Z_]*|CARGO_TARGET_DIR|NGINX)=' || true; } | sort | tr '\n' ' ')scripts/bench.sh"
USER_NAME=bench
PASSWORD=bench-pw-$RANDOM$RANDOM
MARKER=bench-console-5f2a # + newline = the 19-byte page
BIG_BYTES=1048576

die() { echo "bench.sh: $*" >&2 && exit 1; }
# shellcheck source=scripts/bench-common.sh
source "$(dirname "$0")/bench-common.sh"
for tool in "$NGINX" wrk oathtool curl awk sed base64 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install -y nginx wrk oathtool curl)"
done
[ "$ROUNDS" -ge 1 ] || die "BENCH_ROUNDS must be at least 1"
if [ "$CALLGRIND" = 1 ]; then
    for tool in valgrind callgrind_control callgrind_annotate; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required for BENCH_CALLGRIND=1 (apt-get install -y valgrind), or set BENCH_CALLGRIND=0"
    done
fi
if [ "$PROFILE" = 1 ]; then
    for tool in perf strace; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required for BENCH_PROFILE=1 (apt-get install -y linux-perf strace), or set BENCH_PROFILE=0"
    done
fi

# ---------------------------------------------------------------------------------------
# Processes, cleanup, small helpers

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mfa-gate-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of the given pids (all threads, also the exited ones)
    [ $# -gt 0 ] || { echo 0 && return; }
    local files=("${@/#//proc/}")
    awk '{ sub(/.*\) /, ""); s += $12 + $13 } END { print s + 0 }' "${files[@]/%//stat}"
}
mem_kib() { # $1 = VmRSS, VmHWM (from status) or Pss (smaps_rollup), rest = pids: the sum, KiB
    local field=$1 file=/status
    shift
    [ "$field" = Pss ] && file=/smaps_rollup
    local files=("${@/#//proc/}")
    awk -v f="$field:" '$1 == f {s += $2} END {print s + 0}' "${files[@]/%/$file}"
}
memory() { # $1 = target: the gate's VmRSS; nginx's PSS over master + workers (shared pages once)
    # shellcheck disable=SC2046
    if [ "$1" = gate ]; then mem_kib VmRSS "${GATE_PIDS[@]}"; else mem_kib Pss $(own_pids "$1"); fi
}

# ---------------------------------------------------------------------------------------
# Build

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ] && [ -z "${BENCH_GATE_BIN:-}" ]; then
    echo "==> cargo build --release"
    cargo build --release --locked
fi
[ -x "$GATE_BIN" ] || die "$GATE_BIN is missing (build it, or set BENCH_GATE_BIN)"
STARTED=$(date +%s)

# ---------------------------------------------------------------------------------------
# nginx: the console (upstream) and the plain reverse proxy

CONSOLE_PORT=$(free_port)
PROXY_PORT=$(free_port)
GATE_PORT=$(free_port)
while [ "$PROXY_PORT" = "$CONSOLE_PORT" ]; do PROXY_PORT=$(free_port); done
while [ "$GATE_PORT" = "$CONSOLE_PORT" ] || [ "$GATE_PORT" = "$PROXY_PORT" ]; do GATE_PORT=$(free_port); done

# nginx workers run as nobody unless told otherwise, and mktemp -d is 0700.
chmod 755 "$TMP"
NGINX_USER=""
[ "$(id -u)" -eq 0 ] && NGINX_USER="user root;"
nginx_conf() { # $1 = instance dir, $2 = the http block's body
    cat <<EOF
daemon off; master_process on; $NGINX_USER worker_processes auto;
pid "$1/nginx.pid"; error_log "$1/error.log" warn;
events { worker_connections 1024; }
http {
    access_log off; keepalive_requests 100000;
    client_body_temp_path "$1/client_body"; proxy_temp_path "$1/proxy";
    fastcgi_temp_path "$1/fastcgi"; uwsgi_temp_path "$1/uwsgi"; scgi_temp_path "$1/scgi";
$2
}
EOF
}

CONSOLE_DIR=$TMP/console
mkdir -p "$CONSOLE_DIR/www"
echo "$MARKER" >"$CONSOLE_DIR/www/index.html"
head -c "$BIG_BYTES" /dev/urandom >"$CONSOLE_DIR/www/big.bin"
# {PLAIN}: the cheapest password check nginx has, so the proxies' own cost shows.
printf '%s:{PLAIN}%s\n' "$USER_NAME" "$PASSWORD" >"$CONSOLE_DIR/htpasswd"
chmod 755 "$CONSOLE_DIR" "$CONSOLE_DIR/www"
chmod 644 "$CONSOLE_DIR"/www/* "$CONSOLE_DIR/htpasswd"
# Files, not "return": return runs before auth_basic and would not be protected.
nginx_conf "$CONSOLE_DIR" "    types { text/html html; } default_type application/octet-stream;
    server {
        listen 127.0.0.1:$CONSOLE_PORT; server_name _;
        root \"$CONSOLE_DIR/www\"; index index.html;
        auth_basic \"Bench console\"; auth_basic_user_file \"$CONSOLE_DIR/htpasswd\";
    }" >"$CONSOLE_DIR/nginx.conf"

PROXY_DIR=$TMP/proxy
mkdir -p "$PROXY_DIR"
chmod 755 "$PROXY_DIR"
nginx_conf "$PROXY_DIR" "    upstream console { server 127.0.0.1:$CONSOLE_PORT; keepalive 64; keepalive_requests 100000; }
    server {
        listen 127.0.0.1:$PROXY_PORT; server_name _;
        location / {
            proxy_pass http://console; proxy_http_version 1.1; proxy_set_header Connection \"\";
            proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }" >"$PROXY_DIR/nginx.conf"

start_nginx() { # $1 = instance dir, $2 = port, $3 = name; sets NGINX_PIDS (master + workers)
    "$NGINX" -t -q -p "$1" -e "$1/error.log" -c "$1/nginx.conf" || die "nginx rejected $1/nginx.conf"
    "$NGINX" -p "$1" -e "$1/error.log" -c "$1/nginx.conf" >"$1/stdout.log" 2>&1 &
    local master=$!
    PIDS+=("$master")
    wait_http "$2" "$3" "$1/error.log"
    # shellcheck disable=SC2207
    NGINX_PIDS=("$master" $(ps -o pid= --ppid "$master"))
    [ "${#NGINX_PIDS[@]}" -ge 2 ] || die "$3: no worker processes found"
}
echo "==> console (nginx + auth_basic) on 127.0.0.1:$CONSOLE_PORT"
start_nginx "$CONSOLE_DIR" "$CONSOLE_PORT" "console nginx"
CONSOLE_PIDS=("${NGINX_PIDS[@]}")
echo "==> nginx reverse proxy on 127.0.0.1:$PROXY_PORT"
start_nginx "$PROXY_DIR" "$PROXY_PORT" "proxy nginx"
PROXY_PIDS=("${NGINX_PIDS[@]}")

# ---------------------------------------------------------------------------------------
# mfa-gate

GATE_DIR=$TMP/gate
mkdir -p "$GATE_DIR"
cat >"$GATE_DIR/mfa-gate.toml" <<EOF
[server]
listen = "127.0.0.1:$GATE_PORT"
admin_socket = "$GATE_DIR/admin.sock"
[store]
path = "$GATE_DIR/store"
key_file = "$GATE_DIR/master.key"
[totp]
issuer = "bench"
[throttle]
per_ip = "100000/min"
# Like the nginx proxy's access_log off: no line per request.
[log]
access = false
[[site]]
name = "console"
hosts = ["127.0.0.1", "localhost"]
upstream = "http://127.0.0.1:$CONSOLE_PORT"
first_factor = { mode = "basic", probe_path = "/" }
EOF
"$GATE_BIN" check-config "$GATE_DIR/mfa-gate.toml" >/dev/null
echo "==> mfa-gate on 127.0.0.1:$GATE_PORT"
"$GATE_BIN" serve --config "$GATE_DIR/mfa-gate.toml" >"$GATE_DIR/stdout.log" 2>"$GATE_DIR/gate.log" &
GATE_PID=$!
PIDS+=("$GATE_PID")
wait_http "$GATE_PORT" "mfa-gate" "$GATE_DIR/gate.log"
GATE_PIDS=("$GATE_PID")

# ---------------------------------------------------------------------------------------
# Checks before measuring, and the gate session

GATE=http://127.0.0.1:$GATE_PORT
AUTH="Basic $(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)"
JAR=$TMP/cookies.txt
# The login is a browser's (it asks for HTML): a client that does not is answered 401.
BROWSER_ACCEPT="Accept: text/html,application/xhtml+xml,*/*;q=0.8"
curl_gate() { curl -sS --max-time 10 -H "$BROWSER_ACCEPT" -H "Authorization: $AUTH" -b "$JAR" -c "$JAR" "$@"; }

check_target() { # $1 url, rest = curl args; prints the status ("200" only with the right body)
    local url=$1
    shift
    local code
    code=$(curl -sS --max-time 5 -o "$TMP/check.out" -w '%{http_code}' -H "Authorization: $AUTH" "$@" "$url")
    case $url in
    */big.bin) cmp -s "$TMP/check.out" "$CONSOLE_DIR/www/big.bin" || code="$code-wrong-body" ;;
    *) grep -qx "$MARKER" "$TMP/check.out" || code="$code-without-console-page" ;;
    esac
    echo "$code"
}
for t in direct nginx; do
    port=$CONSOLE_PORT
    [ $t = nginx ] && port=$PROXY_PORT
    [ "$(check_target "http://127.0.0.1:$port/")" = 200 ] || die "$t does not serve /"
    [ "$(check_target "http://127.0.0.1:$port/big.bin")" = 200 ] || die "$t does not serve /big.bin"
done
[ "$(check_target "$GATE/" -H "$BROWSER_ACCEPT")" = 303-without-console-page ] || die "the gate passes a browser's request without a session"
[ "$(check_target "$GATE/")" = 401-without-console-page ] || die "the gate passes a script's request without a session"

# A session, through the real flow: password -> pending cookie -> login page -> TOTP code
# (enrollment the first time, verification later) -> session cookie. The gate re-issues a
# session cookie whose activity stamp is 60 s old on every response (wrk never stores the
# new one), so the gate's runs log in again when the session would be that old; a code's
# TOTP step can be used once, so a new login may wait for the next step.
SECRET="" LAST_STEP=0 LOGIN_AT=0 SESSION=""
gate_login() {
    local status page action code now
    rm -f "$JAR"
    status=$(curl_gate -o /dev/null -D "$TMP/login1.h" -w '%{http_code}' "$GATE/")
    [ "$status" = 303 ] || die "password step: expected 303, got $status"
    status=$(curl_gate -o "$TMP/login.html" -w '%{http_code}' "$GATE/.mfa/login")
    [ "$status" = 200 ] || die "login page: expected 200, got $status"
    page=$(cat "$TMP/login.html")
    if grep -q 'id="secret"' <<<"$page"; then
        SECRET=$(sed -n 's/.*id="secret"[^>]*>\([^<]*\)<.*/\1/p' <<<"$page" | head -n1 | tr -d ' ')
    fi
    [ -n "$SECRET" ] || die "no enrollment secret on the first login page"
    action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
    CSRF=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n1)
    [ -n "$action" ] || die "no form on the login page"
    [ -n "$CSRF" ] || die "no csrf field on the login page"
    now=$(date +%s)
    if [ $((now / 30)) -le "$LAST_STEP" ]; then
        echo "    waiting $(((LAST_STEP + 1) * 30 - now)) s for the next TOTP step"
        sleep $(((LAST_STEP + 1) * 30 - now))
    fi
    LAST_STEP=$(($(date +%s) / 30))
    code=$(oathtool --totp -b "$SECRET")
    status=$(curl_gate -o /dev/null -D "$TMP/login2.h" -w '%{http_code}' \
        -H "Origin: $GATE" -H "Sec-Fetch-Site: same-origin" \
        --data-urlencode "code=$code" --data-urlencode "csrf=$CSRF" "$GATE$action")
    [ "$status" = 303 ] || [ "$status" = 200 ] || die "code step ($action): expected 303 or 200, got $status"
    SESSION=$(sed -n 's/^[Ss]et-[Cc]ookie: \(mfa_session=[^;]*\).*/\1/p' "$TMP/login2.h" | tr -d '\r' | head -n1)
    [ -n "$SESSION" ] || die "code step ($action): no mfa_session cookie"
    LOGIN_AT=$(date +%s)
    # With BENCH_KEEP=1, what a later login by hand needs (the run's directory is kept).
    [ "${BENCH_KEEP:-0}" = 1 ] && printf '%s\n' "$SECRET" >"$TMP/secret"
    [ "$(check_target "$GATE/" -H "Cookie: $SESSION")" = 200 ] || die "the gate does not pass the session through"
    [ "$(check_target "$GATE/big.bin" -H "Cookie: $SESSION")" = 200 ] || die "the gate does not pass the 1 MiB file"
    echo "    gate session ok ($action)"
}
ensure_session() { # $1 = seconds the next run needs the session to stay under 60 s old
    [ $(($(date +%s) + $1 + 3 - LOGIN_AT)) -lt 60 ] || gate_login
}

# ---------------------------------------------------------------------------------------
# wrk runs

cat >"$TMP/statuses.lua" <<'EOF'
-- Counts statuses: wrk's "Non-2xx or 3xx" counter does not see a 3xx (a login redirect).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
    end
    for k, v in pairs(total) do io.write(string.format("status %d %d\n", k, v)) end
end
EOF

NAMES=(direct nginx gate)
declare -A URL LABEL
URL[direct]="http://127.0.0.1:$CONSOLE_PORT"
URL[nginx]="http://127.0.0.1:$PROXY_PORT"
URL[gate]="$GATE"
LABEL[direct]="upstream direct"
LABEL[nginx]="nginx proxy"
LABEL[gate]="mfa-gate"
own_pids() { # the target's own processes
    case $1 in
    direct) echo "${CONSOLE_PIDS[*]}" ;;
    nginx) echo "${PROXY_PIDS[*]}" ;;
    gate) echo "${GATE_PIDS[*]}" ;;
    esac
}
run_wrk() { # $1 target, $2 path, $3 duration, $4 output, rest = extra wrk args
    local target=$1 path=$2 duration=$3 out=$4
    shift 4
    local args=(-H "Authorization: $AUTH")
    if [ "$target" = gate ]; then
        ensure_session "$(duration_secs "$duration")"
        args+=(-H "Cookie: $SESSION")
    fi
    timeout --kill-after=5 $(($(duration_secs "$duration") + 30)) \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 5s "${args[@]}" "$@" \
        "${URL[$target]}$path" >"$out" || die "wrk failed against $target$path: $(cat "$out")"
}
children_ticks_to() { # CPU ticks of this shell's finished children (wrk), into file $1
    times >"$TMP/times.txt"
    awk -v hz="$CLK_TCK" 'NR == 2 { t = 0
        for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, p, "m"); t += p[1] * 60 + p[2] }
        printf "%.0f\n", t * hz }' "$TMP/times.txt" >"$1"
}
parse_wrk() { # $1 = wrk output: "rps p99_ms requests bytes/response non2xx3xx socket_errors"
    awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000; return v * 1000 }
        function bytes(v) { m = 1; if (v ~ /GB$/) m = 2^30; else if (v ~ /MB$/) m = 2^20
            else if (v ~ /KB$/) m = 2^10; return v * m }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" { p99 = ms($2) }
        /requests in/ { n = $1; rd = $5; sub(/,$/, "", rd) }
        /Non-2xx or 3xx/ { non = $NF }
        /Socket errors/ { gsub(/[^0-9]+/, " "); k = split($0, a, " "); for (i = 1; i <= k; i++) se += a[i] }
        END { printf "%s %.3f %d %.0f %d %d\n", rps, p99, n, (n > 0 ? bytes(rd) / n : 0), non, se }' "$1"
}

# One measured run; appends to results.tsv:
# round target kind rps p99 reqs bytes/resp non2xx sockerr own_us/req upstream_us/req other%
# wrk_us/req tries
RESULTS=$TMP/results.tsv
: >"$RESULTS"
measure() { # $1 round, $2 target, $3 kind (small|big)
    local round=$1 target=$2 kind=$3 path=/ duration=$DURATION tries=0
    [ "$kind" = big ] && path=/big.bin duration=$BIG_DURATION
    local out=$TMP/wrk-$target-$kind-$round.txt own up sys_b sys_a all_b all_a own_b own_a up_b up_a other
    local best=999 line kept=""
    # shellcheck disable=SC2207
    own=($(own_pids "$target"))
    up=()
    [ "$target" != direct ] && up=("${CONSOLE_PIDS[@]}")
    while :; do
        tries=$((tries + 1))
        # A login now, not inside the measured window (its curls would count as other load).
        [ "$target" != gate ] || ensure_session $(($(duration_secs "$duration") + 2))
        echo "==> round $round: $target $path ($duration)"
        own_b=$(cpu_ticks "${own[@]}")
        up_b=$(cpu_ticks "${up[@]}")
        all_b=$(cpu_ticks "${CONSOLE_PIDS[@]}" "${PROXY_PIDS[@]}" "${GATE_PIDS[@]}")
        sys_b=$(system_ticks)
        children_ticks_to "$TMP/children-before"
        run_wrk "$target" "$path" "$duration" "$out.try" --latency
        children_ticks_to "$TMP/children-after"
        sys_a=$(system_ticks)
        all_a=$(cpu_ticks "${CONSOLE_PIDS[@]}" "${PROXY_PIDS[@]}" "${GATE_PIDS[@]}")
        up_a=$(cpu_ticks "${up[@]}")
        own_a=$(cpu_ticks "${own[@]}")
        # CPU used by anything but wrk and the three servers, in % of all CPUs.
        other=$(awk -v sb="$sys_b" -v sa="$sys_a" \
            -v ours=$((all_a - all_b + $(cat "$TMP/children-after") - $(cat "$TMP/children-before"))) \
            'BEGIN { split(sb, x, " "); split(sa, y, " "); t = y[2] - x[2]; o = (y[1] - x[1]) - ours
                     if (o < 0) o = 0; if (t > 0) printf "%.0f", 100 * o / t; else print 0 }')
        read -r rps p99 reqs bpr non se < <(parse_wrk "$out.try")
        [ "${reqs:-0}" -gt 0 ] || die "could not read wrk's output for $target$path: $(cat "$out.try")"
        echo "    $rps req/s, p99 $p99 ms, other CPU load $other%"
        line=$(awk -v r="$round" -v t="$target" -v k="$kind" -v rps="$rps" -v p99="$p99" -v n="$reqs" \
            -v b="$bpr" -v non="$non" -v se="$se" -v o=$((own_a - own_b)) -v u=$((up_a - up_b)) \
            -v w=$(($(cat "$TMP/children-after") - $(cat "$TMP/children-before"))) \
            -v hz="$CLK_TCK" -v other="$other" 'BEGIN { printf "%s %s %s %s %s %s %s %s %s %.1f %.1f %s %.1f",
            r, t, k, rps, p99, n, b, non, se, o / hz * 1e6 / n, u / hz * 1e6 / n, other, w / hz * 1e6 / n }')
        # Of several tries, the least disturbed one is kept.
        if [ "$other" -lt "$best" ]; then best=$other kept=$line && mv "$out.try" "$out"; fi
        if [ "$other" -le "$MAX_OTHER" ] || [ "$tries" -gt "$RETRIES" ]; then break; fi
        echo "    disturbed by other processes: waiting for a quiet machine, then again"
        wait_quiet || { echo "    still busy: no more tries" && break; }
    done
    echo "$kept $tries" >>"$RESULTS"
}

echo "==> waiting for a quiet machine (at most $IDLE_WAIT s)"
wait_quiet || true
IDLE_BUSY=$BUSY
echo "    CPU busy before measuring: $IDLE_BUSY%"
declare -A RSS_IDLE RSS_AFTER
for t in "${NAMES[@]}"; do RSS_IDLE[$t]=$(memory "$t"); done
gate_login

for round in $(seq "$ROUNDS"); do
    for t in "${NAMES[@]}"; do
        turn=$(($(duration_secs "$WARMUP") + $(duration_secs "$DURATION") + $(duration_secs "$AUDIT") + $(duration_secs "$BIG_DURATION") + 5))
        [ "$t" != gate ] || [ "$turn" -ge 55 ] || ensure_session "$turn"
        if [ "$WARMUP" != 0 ]; then
            echo "==> round $round: $t warm-up ($WARMUP)"
            run_wrk "$t" / "$WARMUP" "$TMP/warmup.txt"
        fi
        measure "$round" "$t" small
        if [ "$AUDIT" != 0 ]; then
            run_wrk "$t" / "$AUDIT" "$TMP/audit-$t-$round.txt" -s "$TMP/statuses.lua"
        fi
        measure "$round" "$t" big
    done
done
sleep 1
for t in "${NAMES[@]}"; do RSS_AFTER[$t]=$(memory "$t"); done
GATE_PEAK=$(mem_kib VmHWM "${GATE_PIDS[@]}")


# Where the time goes: one run of each target under `perf stat` (context switches,
# migrations), one under `strace -c -f` (syscalls by name). strace slows the target down,
# so only its counts per request are kept, not its rate.
PROFILE_TABLE=""
profile() { # $1 target: a row of PROFILE_TABLE
    local t=$1 pids reqs cs mig calls top
    pids=$(own_pids "$t" | tr ' ' ',')
    [ "$t" != gate ] || ensure_session 20
    perf stat -x, -e context-switches,cpu-migrations -p "$pids" -o "$TMP/perf-$t.txt" -- sleep 6 &
    local perf_pid=$!
    sleep 0.5
    run_wrk "$t" / 5s "$TMP/wrk-perf-$t.txt"
    wait "$perf_pid" || true
    read -r _ _ reqs _ < <(parse_wrk "$TMP/wrk-perf-$t.txt")
    cs=$(awk -F, '$3 ~ /^context-switches/ {print $1}' "$TMP/perf-$t.txt")
    mig=$(awk -F, '$3 ~ /^cpu-migrations/ {print $1}' "$TMP/perf-$t.txt")
    # shellcheck disable=SC2046
    strace -q -c -f -o "$TMP/strace-$t.txt" $(own_pids "$t" | sed 's/[0-9]*/-p &/g') &
    local strace_pid=$!
    sleep 1
    run_wrk "$t" / 5s "$TMP/wrk-strace-$t.txt"
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" || true
    local sreqs
    read -r _ _ sreqs _ < <(parse_wrk "$TMP/wrk-strace-$t.txt")
    # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    awk 'NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
            print $NF, (NF == 6 ? $(NF - 2) : $(NF - 1)) }' "$TMP/strace-$t.txt" |
        sort -k2 -gr >"$TMP/syscalls-$t.txt"
    calls=$(awk '{ n += $2 } END { print n + 0 }' "$TMP/syscalls-$t.txt")
    top=$(head -n 6 "$TMP/syscalls-$t.txt" |
        awk -v n="$sreqs" '{printf "%s%s %.2f", (NR > 1 ? ", " : ""), $1, $2 / n}')
    PROFILE_TABLE+="| ${LABEL[$t]} | $(div "$cs" "$reqs") | $(div "$mig" "$reqs") | $(div "$calls" "$sreqs") | $top |
"
}
if [ "$PROFILE" = 1 ]; then
    for t in "${NAMES[@]}"; do
        echo "==> profile: $t"
        profile "$t"
    done
    PROFILE_TABLE="| target | context switches/request | CPU migrations/request | syscalls/request | most frequent syscalls (per request) |
|---|---:|---:|---:|---|
$PROFILE_TABLE"
fi
# Instructions per request: callgrind counts what the CPU executes in user space, the
# same on a busy or a quiet machine. Counting is switched on only around a fixed number of
# requests (ab, keep-alive, 4 at a time), after a warm-up, so start-up and login are left out.
CALLGRIND_TABLE="" CALLGRIND_TOP=""
callgrind_run() { # $1 name, $2 port, $3 = pid of the process under valgrind, rest = wrk args
    local name=$1 port=$2 pid=$3 ir
    shift 3
    # wrk speaks HTTP/1.1 with keep-alive, as browsers do (ab speaks HTTP/1.0).
    wrk -t1 -c4 -d2s "$@" "http://127.0.0.1:$port/" >"$TMP/cg-$name-warm.txt" 2>&1 ||
        die "wrk warm-up against $name failed: $(tail -3 "$TMP/cg-$name-warm.txt")"
    callgrind_control -i on "$pid" >/dev/null
    wrk -t1 -c4 -d"$CALLGRIND_SECONDS" "$@" "http://127.0.0.1:$port/" >"$TMP/cg-$name.txt" 2>&1 ||
        die "wrk against $name failed: $(tail -3 "$TMP/cg-$name.txt")"
    callgrind_control -i off "$pid" >/dev/null
    grep -Eq "Non-2xx|Socket errors" "$TMP/cg-$name.txt" && die "wrk against $name: errors or non-2xx answers: $(cat "$TMP/cg-$name.txt")"
    CALLGRIND_DONE=$(awk '/ requests in / { print $1 }' "$TMP/cg-$name.txt")
    [ "${CALLGRIND_DONE:-0}" -gt 0 ] || die "wrk against $name counted no requests"
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    # The dump holds the counted window (the file written at exit, nothing).
    local dump=$TMP/callgrind-$name.out.1
    [ -s "$dump" ] || die "callgrind wrote no dump for $name"
    ir=$(awk '/^totals:/ { n += $2 } END { print n + 0 }' "$dump")
    [ "$ir" -gt 0 ] || die "callgrind counted no instructions for $name"
    callgrind_annotate --inclusive=no "$dump" >"$TMP/callgrind-$name-annotate.txt" 2>&1 || true
    awk '/^ *[0-9,]+ \(/ && n++ < 15' "$TMP/callgrind-$name-annotate.txt" >"$TMP/callgrind-$name-top.txt"
    CALLGRIND_TABLE+="| $name | $CALLGRIND_DONE | $(awk -v a="$ir" -v n="$CALLGRIND_DONE" 'BEGIN { printf "%.0f", a / n }') |
"
    CALLGRIND_TOP+="
$name, the functions with the most instructions of their own (callgrind_annotate):

\`\`\`
$(cat "$TMP/callgrind-$name-top.txt")
\`\`\`
"
}
if [ "$CALLGRIND" = 1 ]; then
    echo "==> callgrind: mfa-gate (workers = 1), ${CALLGRIND_SECONDS}s of requests"
    kill "$GATE_PID" 2>/dev/null || true
    wait "$GATE_PID" 2>/dev/null || true
    sed 's/^\[server\]$/[server]\nworkers = 1/' "$GATE_DIR/mfa-gate.toml" >"$GATE_DIR/callgrind.toml"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/callgrind-gate.out" \
        "$GATE_BIN" serve --config "$GATE_DIR/callgrind.toml" >"$GATE_DIR/callgrind.log" 2>&1 &
    GATE_PID=$!
    PIDS+=("$GATE_PID")
    wait_http "$GATE_PORT" "mfa-gate under callgrind" "$GATE_DIR/callgrind.log"
    LOGIN_AT=0
    ensure_session 55
    callgrind_run gate "$GATE_PORT" "$GATE_PID" -H "Authorization: $AUTH" -H "Cookie: $SESSION"
    echo "==> callgrind: nginx proxy (master_process off), ${CALLGRIND_SECONDS}s of requests"
    CG_PORT=$(free_port)
    sed -e 's/master_process on;/master_process off;/' -e "s/listen 127.0.0.1:$PROXY_PORT;/listen 127.0.0.1:$CG_PORT;/" \
        -e "s#pid \"$PROXY_DIR/nginx.pid\"#pid \"$PROXY_DIR/callgrind.pid\"#" "$PROXY_DIR/nginx.conf" >"$PROXY_DIR/callgrind.conf"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/callgrind-nginx.out" \
        "$NGINX" -p "$PROXY_DIR" -e "$PROXY_DIR/error.log" -c "$PROXY_DIR/callgrind.conf" >"$PROXY_DIR/callgrind.log" 2>&1 &
    CG_NGINX=$!
    PIDS+=("$CG_NGINX")
    wait_http "$CG_PORT" "nginx under callgrind" "$PROXY_DIR/callgrind.log"
    callgrind_run nginx "$CG_PORT" "$CG_NGINX" -H "Authorization: $AUTH"
    CALLGRIND_TABLE="| target (one process, user space only) | requests counted | instructions/request |
|---|---:|---:|
$CALLGRIND_TABLE"
fi

# shellcheck disable=SC2046
NGINX_RSS_SUM=$(mem_kib VmRSS $(own_pids nginx))
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------------------------------
# Medians and the report

col() { awk -v t="$1" -v k="$2" -v c="$3" '$2 == t && $3 == k {print $c}' "$RESULTS"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
declare -A RPS P99 CPU UPCPU BIG
for t in "${NAMES[@]}"; do
    RPS[$t]=$(col "$t" small 4 | median)
    P99[$t]=$(col "$t" small 5 | median)
    CPU[$t]=$(col "$t" small 10 | median)
    UPCPU[$t]=$(col "$t" small 11 | median)
    BIG[$t]=$(col "$t" big 4 | median)
done

TABLE=$(
    echo "| target | req/s \`/\` | × nginx | p99 ms | CPU µs/request (own processes) | 1 MiB MiB/s | × direct | RSS idle → after load |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for t in "${NAMES[@]}"; do
        peak=""
        [ "$t" = gate ] && peak=" (peak $(mib "$GATE_PEAK"))"
        printf '| %s | %s | %s | %.2f | %.1f | %s | %s | %s → %s MiB%s |\n' "${LABEL[$t]}" \
            "$(commas "${RPS[$t]}")" "$(div "${RPS[$t]}" "${RPS[nginx]}")" "${P99[$t]}" "${CPU[$t]}" \
            "$(commas "${BIG[$t]}")" "$(div "${BIG[$t]}" "${BIG[direct]}")" \
            "$(mib "${RSS_IDLE[$t]}")" "$(mib "${RSS_AFTER[$t]}")" "$peak"
    done
)
ROUNDS_TABLE=$(
    echo "| round | target | req/s \`/\` | × nginx (same round) | p99 ms | CPU µs/req | 1 MiB MiB/s | other CPU load \`/\`, 1 MiB | tries |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    awk 'NR == FNR { if ($2 == "nginx" && $3 == "small") ng[$1] = $4; next }
        $3 == "small" { s[$1, $2] = $0 } $3 == "big" { b[$1, $2] = $0 }
        END { for (r = 1; (r, "direct") in s; r++) for (i = 1; i <= 3; i++) {
            t = i == 1 ? "direct" : i == 2 ? "nginx" : "gate"
            split(s[r, t], x, " "); split(b[r, t], y, " ")
            printf "| %d | %s | %.0f | %.2f | %.2f | %.1f | %.0f | %s%%, %s%% | %s, %s |\n", r, t, x[4],
                x[4] / ng[r], x[5], x[10], y[4], x[12], y[12], x[14], y[14] } }' \
        "$RESULTS" "$RESULTS"
)
CHECKS=$(
    echo "| target | status audit \`/\` (count×status, all rounds) | bytes/response \`/\`, 1 MiB | non-2xx/3xx, socket errors (all runs) | upstream CPU µs/req \`/\` | highest other CPU load |"
    echo "|---|---|---:|---:|---:|---:|"
    for t in "${NAMES[@]}"; do
        audit=$(cat "$TMP"/audit-"$t"-*.txt 2>/dev/null | awk '$1 == "status" {n[$2] += $3}
            END { for (s in n) { printf "%s%s×%s", sep, n[s], s; sep = ", " } }')
        printf '| %s | %s | %s, %s | %s, %s | %s | %s%% |\n' "$t" "${audit:-not audited}" \
            "$(col "$t" small 7 | median)" "$(col "$t" big 7 | median)" \
            "$(awk -v t="$t" '$2 == t {s += $8} END {print s + 0}' "$RESULTS")" \
            "$(awk -v t="$t" '$2 == t {s += $9} END {print s + 0}' "$RESULTS")" \
            "$([ "$t" = direct ] && echo — || echo "${UPCPU[$t]}")" \
            "$(awk -v t="$t" '$2 == t && $12 > m {m = $12} END {print m + 0}' "$RESULTS")"
    done
)

# Where a 1 MiB body's CPU goes (a response is one MiB): the target's own processes, the
# upstream's (for direct, the upstream is the target) and wrk's. The gate's own share is
# what its hop adds to the direct run; that alone bounds its rate on these shared CPUs.
BIG_CPU=$(
    echo "| target | own processes | upstream nginx | wrk | all three | × direct's all three | rate bound × direct |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    direct_all=$(awk 'BEGIN { printf "%.0f", '"$(col direct big 10 | median)"' + '"$(col direct big 13 | median)"' }')
    for t in "${NAMES[@]}"; do
        big_own=$(col "$t" big 10 | median) big_wrk=$(col "$t" big 13 | median) big_up=0
        [ "$t" = direct ] || big_up=$(col "$t" big 11 | median)
        awk -v t="${LABEL[$t]}" -v o="$big_own" -v u="$big_up" -v w="$big_wrk" -v d="$direct_all" -v direct="$([ "$t" = direct ] && echo 1 || echo 0)" \
            'BEGIN { a = o + u + w; printf "| %s | %.0f | %s | %.0f | %.0f | %.2f | %s |\n", t, o,
                direct ? "(own)" : sprintf("%.0f", u), w, a, a / d, direct ? "—" : sprintf("%.2f", d / (d + o)) }'
    done
)

PROBLEMS=""
for t in "${NAMES[@]}"; do
    bad=$(awk -v t="$t" '$2 == t && ($8 > 0 || $9 > 0)' "$RESULTS" | wc -l)
    [ "$bad" = 0 ] || PROBLEMS+="- **$t**: $bad run(s) with non-2xx/3xx responses or socket errors."$'\n'
    if [ "$AUDIT" != 0 ] && ! cat "$TMP"/audit-"$t"-*.txt |
        awk '$1 == "status" { n++; if ($2 != 200) bad = 1 } END { exit (n == 0 || bad) }'; then
        PROBLEMS+="- **$t**: the status audit saw statuses other than 200."$'\n'
    fi
    bad=$(awk -v t="$t" -v lo=$BIG_BYTES '$2 == t && $3 == "big" && ($7 < lo * 0.99 || $7 > lo * 1.01)' "$RESULTS" | wc -l)
    [ "$bad" = 0 ] || PROBLEMS+="- **$t**: $bad 1 MiB run(s) did not read ~1 MiB per response."$'\n'
    bad=$(awk -v t="$t" -v m="$MAX_OTHER" '$2 == t && $12 > m' "$RESULTS" | wc -l)
    [ "$bad" = 0 ] || PROBLEMS+="- **$t**: $bad run(s) kept with more than $MAX_OTHER% other CPU load (retries or waiting budget used up); those numbers are disturbed."$'\n'
done
GATE_WARNS=$(grep -cE 'WARN|ERROR' "$GATE_DIR/gate.log" || true)
[ "$GATE_WARNS" = 0 ] || PROBLEMS+="- the gate logged $GATE_WARNS WARN/ERROR line(s), e.g.: \`$(grep -m1 -E 'WARN|ERROR' "$GATE_DIR/gate.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200)\`"$'\n'

verdict() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "**not met**"; fi; }
TARGETS="- gate req/s ≥ 1.0× nginx: $(div "${RPS[gate]}" "${RPS[nginx]}")× — $(verdict "${RPS[gate]} >= ${RPS[nginx]}")
- gate p99 ≤ nginx p99 + 0.2 ms: $(printf '%.2f vs %.2f' "${P99[gate]}" "${P99[nginx]}") ms — $(verdict "${P99[gate]} <= ${P99[nginx]} + 0.2")
- gate CPU/request ≤ nginx's: ${CPU[gate]} vs ${CPU[nginx]} µs — $(verdict "${CPU[gate]} <= ${CPU[nginx]}")
- gate 1 MiB ≥ 0.9× direct: $(div "${BIG[gate]}" "${BIG[direct]}")× — $(verdict "${BIG[gate]} >= 0.9 * ${BIG[direct]}")
- gate RSS ≤ 15 MB idle, ≤ 20 MB after the load (read as MiB): $(mib "${RSS_IDLE[gate]}") → $(mib "${RSS_AFTER[gate]}") MiB — $(verdict "${RSS_IDLE[gate]} <= 15 * 1024 && ${RSS_AFTER[gate]} <= 20 * 1024")"

SPREAD=$(for t in "${NAMES[@]}"; do
    for k in small big; do col "$t" $k 4 | sort -g | awk -v t="$t" -v k=$k -v m="$([ $k = small ] && echo "${RPS[$t]}" || echo "${BIG[$t]}")" \
        '{a[NR] = $1} END { v = 100 * (a[NR] - a[1]) / m
            if (k == "small") printf "%s %.0f %%", t, v; else printf " (1 MiB %.0f %%); ", v }'; done
done)
SPREAD=${SPREAD%; }
NGINX_SPOOLED=$(grep -c 'buffered to a temporary file' "$PROXY_DIR/error.log" || true)
CPU_MODEL=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
SRC_COMMIT=$(git log -1 --format='%h %s' -- src Cargo.toml Cargo.lock 2>/dev/null || true)
[ "${#SRC_COMMIT}" -le 90 ] || SRC_COMMIT="${SRC_COMMIT:0:90}…"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || COMMIT="$COMMIT + uncommitted changes in src/ or Cargo.*"
# The hand-written findings at the end of an existing report are carried over, and so is
# the section scripts/bench-store.sh writes (between its markers), put back before them.
FINDINGS="" STORE_SECTION=""
STORE_RANGE='/^<!-- store-bench:start -->$/,/^<!-- store-bench:end -->$/'
if [ -f "$OUTPUT" ]; then
    FINDINGS=$(sed -n '/^## Findings and changes/,$p' "$OUTPUT" | sed "${STORE_RANGE}d")
    STORE_SECTION=$(sed -n "${STORE_RANGE}p" "$OUTPUT")
fi
WRK_CMD="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout 5s --latency -H 'Authorization: Basic …' [-H 'Cookie: mfa_session=…'] URL/  (1 MiB: -d$BIG_DURATION URL/big.bin)"

{
    cat <<EOF
# Benchmarks

Measured by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the measurements took $ELAPSED s (after the build).

- Command: \`$CMDLINE\`
- Commit: \`$COMMIT\`, release build; the last change to src/ and Cargo.* in it: \`$SRC_COMMIT\`
- Machine: $(nproc) CPUs (${CPU_MODEL:-unknown}), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}')
- CPU busy just before the first run: $IDLE_BUSY%

## Results (medians of $ROUNDS alternating rounds)

$TABLE

Against issue 11's targets:

$TARGETS

Per round:

$ROUNDS_TABLE

Checks:

$CHECKS

CPU µs per 1 MiB response (medians; user + system, as for \`/\`; the kernel's TCP work is charged mostly to the sending process). wrk, the upstream and the proxy share the same $(nproc) CPUs, so the 1 MiB rate follows the three's total per MiB. A proxy adds at least its own column to the direct run's total; even if the upstream and wrk cost no more than they do direct, its rate is at most *rate bound* = direct's total ÷ (direct's total + its own) of the direct rate.

$BIG_CPU

EOF
    if [ -n "$PROBLEMS" ]; then printf '### Problems seen in this run\n\n%s\n' "$PROBLEMS"; fi
    if [ -n "$PROFILE_TABLE" ]; then
        printf '## Where the time goes (one more 5 s run per target)\n\n%s\n' "$PROFILE_TABLE"
        printf '%s\n\n' "Context switches and migrations from \`perf stat\` over the target's processes during a normal run; syscalls from a separate run under \`strace -c -f\` (which slows the target, so only the counts per request are used)."
    fi
    if [ -n "$CALLGRIND_TABLE" ]; then
        printf '## Instructions per request (callgrind, %s of requests of %s)\n\n%s\n%s\n' "${CALLGRIND_SECONDS}s" "\`/\`" "$CALLGRIND_TABLE" "$CALLGRIND_TOP"
        printf '%s\n\n' "Each target alone under \`valgrind --tool=callgrind\`, counting switched on (\`--instr-atstart=no\`, then \`callgrind_control -i on\`) only around \`wrk -t1 -c4 -d${CALLGRIND_SECONDS}s\` (HTTP/1.1, kept alive) after a 2 s warm-up: instructions executed in user space per request (the kernel's share is not counted). The gate runs with \`workers = 1\`, nginx with \`master_process off\`. Repeatable whatever else the machine runs."
    fi
    cat <<EOF
## How it is measured

- All on 127.0.0.1 on this machine: wrk, the upstream, the nginx proxy and the gate share the $(nproc) CPUs, so CPU a proxy spends is throughput lost.
- Upstream: nginx (\`worker_processes auto\`, access log off) serving a $(wc -c <"$CONSOLE_DIR/www/index.html")-byte \`index.html\` at \`/\` and a 1 MiB \`big.bin\`, both behind \`auth_basic\` (\`{PLAIN}\` password file).
- nginx proxy: \`proxy_pass\` over an upstream block with \`keepalive 64\`, HTTP/1.1, nginx's default response buffering (its error log noted $NGINX_SPOOLED response(s) spooled to a temporary file in this run).
- mfa-gate: \`serve\` in basic mode, embedded store in a temp dir, no access lines (\`[log] access = false\`, as nginx's \`access_log off\`), other logging to a file. One user enrolled and logged in through the real flow (curl + \`oathtool --totp\`); wrk sends that session cookie and the Basic credentials. The gate re-issues a session cookie whose activity stamp is 60 s old on every response (wrk keeps the old one), so the script logs in again before a gate run would reach that age.
- Each round runs direct, nginx, gate in turn; a turn is $([ "$WARMUP" != 0 ] && echo "a $WARMUP warm-up on \`/\` (not recorded), ")the measured run on \`/\` ($DURATION), $([ "$AUDIT" != 0 ] && echo "a $AUDIT status audit on \`/\` (a Lua script counts statuses: wrk counts a 3xx, e.g. a redirect to the login page, as success), ")and the measured 1 MiB run ($BIG_DURATION). Each column is the median over the rounds; × nginx and × direct are ratios of the medians.
- Command per run: \`$WRK_CMD\`
- req/s and p99: wrk's \`Requests/sec\` and the 99 % line of \`--latency\`. 1 MiB MiB/s: requests/s of the 1 MiB GET (one body = 1 MiB).
- CPU µs/request: user + system CPU time (\`/proc/PID/stat\`, ${CLK_TCK} Hz ticks) of the target's own processes during the run, divided by wrk's requests: the upstream nginx (master + workers) for direct, the proxy nginx for nginx, the gate process for mfa-gate. *Upstream CPU* is the upstream nginx's share of the same requests.
- RSS, in MiB, right after start (before any load) and 1 s after the last round: the gate's VmRSS (peak: VmHWM); for nginx the PSS summed over master and workers, which counts their shared pages once (their plain RSS sum counts them two or three times: $(mib "$NGINX_RSS_SUM") MiB for the proxy after the load).
- Other CPU load: CPU time the machine spent during a run outside wrk and the three servers, in % of all CPUs. A run above $MAX_OTHER% is redone (up to $RETRIES times) after waiting for a quiet machine (at most $IDLE_WAIT s each time, $WAIT_BUDGET s in all; $WAITED s were spent), and the least disturbed try is kept; *tries* counts the tries.
- Noise: the spread (max − min) / median of req/s over the rounds was $SPREAD; compare medians, and only runs whose *other CPU load* is near 0. Absolute rates differ between machines and moments (issue 11 saw 127,778 req/s direct and 54,711 through nginx); compare the ratios of one run.

<details><summary>Raw wrk output of the last round</summary>

EOF
    for t in "${NAMES[@]}"; do
        for k in small big; do
            printf '**%s, %s**\n\n```\n' "${LABEL[$t]}" "$([ $k = small ] && echo / || echo 1 MiB)"
            sed 's/Basic [A-Za-z0-9+\/=]*/Basic …/' "$TMP/wrk-$t-$k-$ROUNDS.txt"
            printf '```\n\n'
        done
    done
    echo "</details>"
    [ -z "$STORE_SECTION" ] || printf '\n%s\n' "$STORE_SECTION"
    [ -z "$FINDINGS" ] || printf '\n%s\n' "$FINDINGS"
} >"$OUTPUT"

printf '\n%s\n\n%s\n\n%s\n\n%s\n\n%s\n\n%s\n%s\n' "$TABLE" "$TARGETS" "$ROUNDS_TABLE" "$CHECKS" "$PROFILE_TABLE" "$CALLGRIND_TABLE" "$CALLGRIND_TOP"
[ -z "$PROBLEMS" ] || printf '\nProblems:\n%s' "$PROBLEMS"
printf '\nMeasurements took %s s. Wrote %s\n' "$ELAPSED" "$OUTPUT"
