#!/usr/bin/env bash
# Loopback benchmark: the same small Basic-auth "console" (nginx serving a static file
# behind auth_basic) measured three ways, in one run, side by side:
#
#   direct  wrk -> console
#   nginx   wrk -> nginx reverse proxy (keepalive upstream) -> console
#   gate    wrk -> mfa-gate (valid session cookie + Basic credentials) -> console
#
# Builds `cargo build --release`, starts everything in a temp dir on 127.0.0.1 with
# free ports, logs in to the gate with curl + oathtool to get a session, runs wrk against
# each target, writes BENCHMARKS.md (and prints the table). Everything it starts is
# stopped on exit.
#
# Needs: cargo, nginx, wrk, oathtool, curl (apt-get install -y nginx wrk oathtool curl).
#
# Knobs (environment):
#   BENCH_DURATION     wrk -d for each measured run          (default 10s)
#   BENCH_THREADS      wrk -t                                 (default 2)
#   BENCH_CONNECTIONS  wrk -c                                 (default 32)
#   BENCH_WARMUP       unrecorded warm-up run per target, 0 = none (default 2s)
#   BENCH_AUDIT        status-counting run per target, 0 = none    (default 2s)
#   BENCH_OUTPUT       the report                             (default BENCHMARKS.md)
#   BENCH_SKIP_BUILD   1 = use the existing target/release/mfa-gate
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
WARMUP=${BENCH_WARMUP:-2s}
AUDIT=${BENCH_AUDIT:-2s}
OUTPUT=${BENCH_OUTPUT:-BENCHMARKS.md}
case $OUTPUT in /*) ;; *) OUTPUT=$ROOT/$OUTPUT ;; esac
NGINX=${NGINX:-/usr/sbin/nginx}
USER_NAME=bench
PASSWORD=bench-pw-$RANDOM$RANDOM
MARKER=bench-console-marker-5f2a

die() {
    echo "bench.sh: $*" >&2
    exit 1
}

for tool in cargo "$NGINX" wrk oathtool curl awk sed base64; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install -y nginx wrk oathtool curl)"
done

# ---------------------------------------------------------------------------------------
# Processes and cleanup

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mfa-gate-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on right now (racy, but everything here binds it at once).
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# Waits until http://127.0.0.1:$1/ answers at all (any status), up to 20 s.
wait_http() {
    local port=$1 name=$2 log=$3
    for _ in $(seq 200); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
            return 0
        fi
        sleep 0.1
    done
    echo "---- $log" >&2
    cat "$log" >&2 || true
    die "$name did not start on port $port"
}

# ---------------------------------------------------------------------------------------
# Build

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "==> cargo build --release"
    cargo build --release --locked
fi
GATE_BIN=$ROOT/target/release/mfa-gate
[ -x "$GATE_BIN" ] || die "$GATE_BIN is missing (run without BENCH_SKIP_BUILD)"

# ---------------------------------------------------------------------------------------
# nginx: the console and the plain reverse proxy

CONSOLE_PORT=$(free_port)
PROXY_PORT=$(free_port)
GATE_PORT=$(free_port)
while [ "$PROXY_PORT" = "$CONSOLE_PORT" ]; do PROXY_PORT=$(free_port); done
while [ "$GATE_PORT" = "$CONSOLE_PORT" ] || [ "$GATE_PORT" = "$PROXY_PORT" ]; do GATE_PORT=$(free_port); done

# nginx workers run as nobody unless told otherwise, and mktemp -d is 0700: open the
# permissions, and run workers as root when we are root (a test-only config).
chmod 755 "$TMP"
NGINX_USER=""
[ "$(id -u)" -eq 0 ] && NGINX_USER="user root;"

nginx_common() { # $1 = instance dir
    cat <<EOF
daemon off;
master_process on;
$NGINX_USER
worker_processes auto;
pid "$1/nginx.pid";
error_log "$1/error.log" warn;
events { worker_connections 1024; }
EOF
}

nginx_temp_paths() { # $1 = instance dir
    cat <<EOF
    client_body_temp_path "$1/client_body";
    proxy_temp_path "$1/proxy";
    fastcgi_temp_path "$1/fastcgi";
    uwsgi_temp_path "$1/uwsgi";
    scgi_temp_path "$1/scgi";
EOF
}

CONSOLE_DIR=$TMP/console
mkdir -p "$CONSOLE_DIR/www"
cat >"$CONSOLE_DIR/www/index.html" <<EOF
<!doctype html><html><head><title>Router</title></head>
<body><h1>Legacy router console</h1><p>$MARKER</p></body></html>
EOF
# {PLAIN}: the cheapest password check nginx has, so the console is as fast as it gets
# and the proxies' own cost shows.
printf '%s:{PLAIN}%s\n' "$USER_NAME" "$PASSWORD" >"$CONSOLE_DIR/htpasswd"
chmod 755 "$CONSOLE_DIR" "$CONSOLE_DIR/www"
chmod 644 "$CONSOLE_DIR/www/index.html" "$CONSOLE_DIR/htpasswd"
{
    nginx_common "$CONSOLE_DIR"
    cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$CONSOLE_DIR")
    types { text/html html; }
    default_type text/plain;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$CONSOLE_PORT;
        server_name _;
        # Files, not "return": return runs before auth_basic and would not be protected.
        root "$CONSOLE_DIR/www";
        index index.html;
        auth_basic "Bench console";
        auth_basic_user_file "$CONSOLE_DIR/htpasswd";
    }
}
EOF
} >"$CONSOLE_DIR/nginx.conf"

PROXY_DIR=$TMP/proxy
mkdir -p "$PROXY_DIR"
chmod 755 "$PROXY_DIR"
{
    nginx_common "$PROXY_DIR"
    cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$PROXY_DIR")
    keepalive_requests 100000;
    upstream console {
        server 127.0.0.1:$CONSOLE_PORT;
        keepalive 64;
        keepalive_requests 100000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        server_name _;
        location / {
            proxy_pass http://console;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
} >"$PROXY_DIR/nginx.conf"

start_nginx() { # $1 = instance dir, $2 = port, $3 = name
    "$NGINX" -t -q -p "$1" -e "$1/error.log" -c "$1/nginx.conf" ||
        die "nginx rejected $1/nginx.conf"
    "$NGINX" -p "$1" -e "$1/error.log" -c "$1/nginx.conf" >"$1/stdout.log" 2>&1 &
    PIDS+=($!)
    echo "$!" >"$1/master.pid"
    wait_http "$2" "$3" "$1/error.log"
}

echo "==> console (nginx + auth_basic) on 127.0.0.1:$CONSOLE_PORT"
start_nginx "$CONSOLE_DIR" "$CONSOLE_PORT" "console nginx"
echo "==> nginx reverse proxy on 127.0.0.1:$PROXY_PORT"
start_nginx "$PROXY_DIR" "$PROXY_PORT" "proxy nginx"

# ---------------------------------------------------------------------------------------
# mfa-gate

GATE_DIR=$TMP/gate
mkdir -p "$GATE_DIR"
cat >"$GATE_DIR/mfa-gate.toml" <<EOF
[server]
listen = "127.0.0.1:$GATE_PORT"

[store]
path = "$GATE_DIR/store"
key_file = "$GATE_DIR/master.key"

[totp]
issuer = "bench"

[throttle]
# The benchmark logs in once; keep the limiter out of the way anyway.
per_ip = "100000/min"

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

# ---------------------------------------------------------------------------------------
# A gate session: password -> pending cookie -> enrollment page -> TOTP code -> session

GATE=http://127.0.0.1:$GATE_PORT
AUTH="Basic $(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)"
JAR=$TMP/cookies.txt
curl_gate() {
    curl -sS --max-time 10 -H "Authorization: $AUTH" -b "$JAR" -c "$JAR" "$@"
}

# Fetches a target once with the Basic credentials: prints the status ("200" only if the
# console's page came back), keeps the response headers for the report.
check_target() { # $1 = name, $2 = url, $3.. = extra curl args; prints the status, checks the marker
    local name=$1 url=$2
    shift 2
    local code
    code=$(curl -sS --max-time 5 -o "$TMP/check.html" -D "$TMP/headers-$name.txt" -w '%{http_code}' \
        -H "Authorization: $AUTH" "$@" "$url")
    if [ "$code" = 200 ] && ! grep -q "$MARKER" "$TMP/check.html"; then
        code="200-without-console-page"
    fi
    echo "$code"
}
[ "$(check_target direct "http://127.0.0.1:$CONSOLE_PORT/")" = 200 ] || die "the console does not serve its page"
[ "$(check_target nginx "http://127.0.0.1:$PROXY_PORT/")" = 200 ] || die "the nginx proxy does not serve the console page"
[ "$(check_target gate-no-session "$GATE/")" = 303 ] || die "the gate passes requests without a session"

# Enrolls the user and sets SESSION. Run right before the gate's runs: the gate refreshes
# a session cookie that is more than 60 s old on every response, and wrk never stores
# the fresh one.
gate_login() {
    echo "==> logging in to the gate"
    status=$(curl_gate -o /dev/null -D "$TMP/login1.h" -w '%{http_code}' "$GATE/")
    [ "$status" = 303 ] || die "password step: expected 303, got $status ($(cat "$TMP/login1.h"))"
    grep -qi '^set-cookie: mfa_pending=' "$TMP/login1.h" || die "password step: no mfa_pending cookie"

    status=$(curl_gate -o "$TMP/login.html" -w '%{http_code}' "$GATE/.mfa/login")
    [ "$status" = 200 ] || die "login page: expected 200, got $status"
    SECRET=$(sed -n 's/.*id="secret"[^>]*>\([^<]*\)<.*/\1/p' "$TMP/login.html" | head -n1 | tr -d ' ')
    CSRF=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$TMP/login.html" | head -n1)
    [ -n "$SECRET" ] || die "no enrollment secret (id=\"secret\") on the login page"
    [ -n "$CSRF" ] || die "no csrf field on the login page"
    CODE=$(oathtool --totp -b "$SECRET")

    status=$(curl_gate -o /dev/null -D "$TMP/login2.h" -w '%{http_code}' \
        -H "Origin: $GATE" -H "Sec-Fetch-Site: same-origin" \
        --data-urlencode "code=$CODE" --data-urlencode "csrf=$CSRF" "$GATE/.mfa/enroll")
    # 303 to the console, or 200 with a page shown once (e.g. recovery codes); either way
    # with the session cookie.
    [ "$status" = 303 ] || [ "$status" = 200 ] || die "enrollment: expected 303 or 200, got $status"
    SESSION=$(sed -n 's/^[Ss]et-[Cc]ookie: \(mfa_session=[^;]*\).*/\1/p' "$TMP/login2.h" | tr -d '\r' | head -n1)
    [ -n "$SESSION" ] || die "enrollment: no mfa_session cookie"
    [ "$(check_target gate "$GATE/" -H "Cookie: $SESSION")" = 200 ] || die "the gate does not pass the session through"
    echo "    session ok"
}

# ---------------------------------------------------------------------------------------
# wrk

cat >"$TMP/statuses.lua" <<'EOF'
-- Counts response statuses per thread and prints them at the end: wrk's own
-- "Non-2xx or 3xx" counter does not see a 3xx (a redirect to the login page).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
    end
    local keys = {}
    for k in pairs(total) do table.insert(keys, k) end
    table.sort(keys)
    for _, k in ipairs(keys) do io.write(string.format("status %d %d\n", k, total[k])) end
end
EOF

NAMES=(direct nginx gate)
declare -A URL LABEL
URL[direct]="http://127.0.0.1:$CONSOLE_PORT/"
URL[nginx]="http://127.0.0.1:$PROXY_PORT/"
URL[gate]="$GATE/"
LABEL[direct]="direct (console nginx, auth_basic)"
LABEL[nginx]="nginx reverse proxy → console"
LABEL[gate]="mfa-gate (session + Basic) → console"

wrk_args() { # $1 = target; the headers it sends
    printf '%s\0' -H "Authorization: $AUTH"
    if [ "$1" = gate ]; then printf '%s\0' -H "Cookie: $SESSION"; fi
}

# Process ids whose CPU time counts as "the proxy" for a target.
proxy_pids() {
    case $1 in
    nginx)
        local master
        master=$(cat "$PROXY_DIR/master.pid")
        echo "$master" $(ps -o pid= --ppid "$master")
        ;;
    gate) echo "$GATE_PID" ;;
    *) echo "" ;;
    esac
}
cpu_ticks() { # utime + stime of the given pids (all their threads)
    local total=0 pid
    for pid in "$@"; do
        if [ -r "/proc/$pid/stat" ]; then
            total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
        fi
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

run_wrk() { # $1 = target, $2 = duration, $3 = output file, rest = extra wrk args
    local target=$1 duration=$2 out=$3
    shift 3
    local args=()
    mapfile -d '' args < <(wrk_args "$target")
    timeout --kill-after=5 $(($(duration_secs "$duration") + 30)) \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 5s "${args[@]}" "$@" "${URL[$target]}" >"$out"
}
duration_secs() { # wrk durations: 10, 10s, 2m, 1h
    local d=$1
    case $d in
    *s) echo "${d%s}" ;;
    *m) echo $((${d%m} * 60)) ;;
    *h) echo $((${d%h} * 3600)) ;;
    *) echo "$d" ;;
    esac
}

# System-wide CPU ticks: "busy total" (steal counts as busy: on a VM it is someone else).
system_ticks() {
    awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat
}
cpu_busy_percent() { # share of busy CPU time over one second, all CPUs
    local a b
    a=$(system_ticks)
    sleep 1
    b=$(system_ticks)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; if (t > 0) printf "%.0f", 100 * (y[1] - x[1]) / t; else print "?" }'
}
# CPU ticks of this script's finished children (wrk), from the shell's own `times`; run
# in the main shell (a $(...) subshell would count only its own children).
children_ticks_to() { # $1 = file to write the tick count to
    times >"$TMP/times.txt"
    awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, p, "m"); t += p[1] * 60 + p[2] }
        printf "%.0f\n", t * hz }' "$TMP/times.txt" >"$1"
}
# Every process this script started that serves requests: both nginx instances and the gate.
server_pids() {
    local master
    for master in $(cat "$CONSOLE_DIR/master.pid" "$PROXY_DIR/master.pid"); do
        echo "$master" $(ps -o pid= --ppid "$master")
    done
    echo "$GATE_PID"
}

# Wait (bounded) for a quiet machine: another build or test run on the same CPUs would
# make the numbers meaningless.
IDLE_WAIT=${BENCH_IDLE_WAIT:-120}
IDLE_BUSY=$(cpu_busy_percent)
waited=0
while [ "$IDLE_BUSY" != "?" ] && [ "$IDLE_BUSY" -gt 10 ] && [ "$waited" -lt "$IDLE_WAIT" ]; do
    echo "==> the machine is busy ($IDLE_BUSY% CPU); waiting for it to calm down ($waited/$IDLE_WAIT s)"
    sleep 4
    waited=$((waited + 5))
    IDLE_BUSY=$(cpu_busy_percent)
done
echo "==> CPU busy before measuring: $IDLE_BUSY%"

WRK_CMD="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout 5s --latency -H 'Authorization: Basic …' [-H 'Cookie: mfa_session=…'] URL"
declare -A CPU OTHERS
for target in "${NAMES[@]}"; do
    [ "$target" = gate ] && gate_login
    if [ "$WARMUP" != 0 ]; then
        echo "==> warm-up $target ($WARMUP)"
        run_wrk "$target" "$WARMUP" "$TMP/warmup-$target.txt"
    fi
    echo "==> wrk $target ($DURATION)"
    pids=$(proxy_pids "$target")
    # shellcheck disable=SC2086
    before=$(cpu_ticks $pids)
    # shellcheck disable=SC2046
    servers_before=$(cpu_ticks $(server_pids))
    system_before=$(system_ticks)
    children_ticks_to "$TMP/children-before"
    run_wrk "$target" "$DURATION" "$TMP/wrk-$target.txt" --latency
    children_ticks_to "$TMP/children-after"
    system_after=$(system_ticks)
    # shellcheck disable=SC2046
    servers_after=$(cpu_ticks $(server_pids))
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)
    CPU[$target]=$((after - before))
    # CPU used by anything else on the machine during the run, in % of all CPUs.
    OTHERS[$target]=$(awk -v sb="$system_before" -v sa="$system_after" \
        -v ours=$((servers_after - servers_before + $(cat "$TMP/children-after") - $(cat "$TMP/children-before"))) \
        'BEGIN { split(sb, x, " "); split(sa, y, " "); t = y[2] - x[2]; o = (y[1] - x[1]) - ours;
                 if (o < 0) o = 0; if (t > 0) printf "%.0f", 100 * o / t; else print "?" }')
    cat "$TMP/wrk-$target.txt"
    if [ "$AUDIT" != 0 ]; then
        run_wrk "$target" "$AUDIT" "$TMP/audit-$target.txt" -s "$TMP/statuses.lua"
    fi
done

# ---------------------------------------------------------------------------------------
# Parse and report

to_ms() { # wrk's 812.00us / 1.23ms / 1.02s -> milliseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.0f", v * 1000 }
        else { printf "?" }
    }'
}
to_bytes() { # 12.34MB -> bytes
    awk -v v="$1" 'BEGIN {
        m = 1
        if (v ~ /GB$/) m = 1024 * 1024 * 1024; else if (v ~ /MB$/) m = 1024 * 1024; else if (v ~ /KB$/) m = 1024
        sub(/[KMG]?B$/, "", v); printf "%.0f", v * m
    }'
}

declare -A RPS AVG P99 REQS NON2XX SOCKERR BYTES STATUSES
for target in "${NAMES[@]}"; do
    f=$TMP/wrk-$target.txt
    RPS[$target]=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    AVG[$target]=$(to_ms "$(awk '$1 == "Latency" && $2 != "Distribution" {print $2; exit}' "$f")")
    P99[$target]=$(to_ms "$(awk '$1 == "99%" {print $2; exit}' "$f")")
    REQS[$target]=$(awk '/requests in/ {print $1; exit}' "$f")
    NON2XX[$target]=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2; exit}' "$f")
    NON2XX[$target]=${NON2XX[$target]:-0}
    SOCKERR[$target]=$(awk -F': *' '/Socket errors/ {print $2; exit}' "$f" | sed 's/,/ /g; s/  */ /g')
    SOCKERR[$target]=${SOCKERR[$target]:-none}
    read_total=$(awk '/requests in/ {print $5; exit}' "$f" | tr -d ',')
    BYTES[$target]=$(awk -v b="$(to_bytes "$read_total")" -v n="${REQS[$target]}" 'BEGIN { if (n > 0) printf "%.0f", b / n; else print "?" }')
    if [ -f "$TMP/audit-$target.txt" ]; then
        STATUSES[$target]=$(awk '$1 == "status" {printf "%s%s×%s", sep, $3, $2; sep = ", "}' "$TMP/audit-$target.txt")
    else
        STATUSES[$target]="not audited"
    fi
    [ -n "${RPS[$target]}" ] || die "could not read wrk's output for $target: $(cat "$f")"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "?" }'; }
cpu_per_req() { # CPU µs per request of the proxy process(es)
    [ "$1" = direct ] && {
        echo "—"
        return
    }
    awk -v t="${CPU[$1]}" -v hz="$CLK_TCK" -v n="${REQS[$1]}" 'BEGIN { if (n > 0) printf "%.0f µs", t / hz * 1e6 / n; else print "?" }'
}

PROBLEMS=""
for target in "${NAMES[@]}"; do
    if [ "${NON2XX[$target]}" != 0 ] || [ "${SOCKERR[$target]}" != none ]; then
        PROBLEMS+="- **$target**: ${NON2XX[$target]} non-2xx/3xx responses; socket errors: ${SOCKERR[$target]}."$'\n'
    fi
    if [ -f "$TMP/audit-$target.txt" ] &&
        ! awk '$1 == "status" { n++; if ($2 != 200) bad = 1 } END { exit (n == 0 || bad) }' "$TMP/audit-$target.txt"; then
        PROBLEMS+="- **$target**: the status audit saw ${STATUSES[$target]} (expected only 200)."$'\n'
    fi
    if [ "${OTHERS[$target]}" = "?" ] || [ "${OTHERS[$target]}" -gt 10 ]; then
        PROBLEMS+="- **$target**: other processes used ${OTHERS[$target]}% of the CPUs during the run; its numbers are disturbed."$'\n'
    fi
done

TABLE=$(
    echo "| Target | Requests/s | Avg latency | p99 latency | vs direct | vs nginx proxy | Non-2xx/3xx | Socket errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for target in "${NAMES[@]}"; do
        printf '| %s | %s | %s ms | %s ms | %s | %s | %s | %s |\n' \
            "${LABEL[$target]}" "$(printf '%.0f' "${RPS[$target]}")" "${AVG[$target]}" "${P99[$target]}" \
            "$(ratio "${RPS[$target]}" "${RPS[direct]}")" "$(ratio "${RPS[$target]}" "${RPS[nginx]}")" \
            "${NON2XX[$target]}" "${SOCKERR[$target]}"
    done
)
CHECKS=$(
    echo "| Target | Status audit (status×count) | Bytes/response | Proxy CPU/request | Other CPU load during the run |"
    echo "|---|---|---:|---:|---:|"
    for target in "${NAMES[@]}"; do
        printf '| %s | %s | %s | %s | %s%% |\n' \
            "$target" "${STATUSES[$target]}" "${BYTES[$target]}" "$(cpu_per_req "$target")" "${OTHERS[$target]}"
    done
)

GATE_VS_NGINX=$(awk -v a="${RPS[gate]}" -v b="${RPS[nginx]}" 'BEGIN { printf "%.0f", 100 * a / b }')
GATE_VS_DIRECT=$(awk -v a="${RPS[gate]}" -v b="${RPS[direct]}" 'BEGIN { printf "%.0f", 100 * a / b }')
NGINX_VS_DIRECT=$(awk -v a="${RPS[nginx]}" -v b="${RPS[direct]}" 'BEGIN { printf "%.0f", 100 * a / b }')
LONG_NOTE=""
if [ $(($(duration_secs "$WARMUP") + $(duration_secs "$DURATION") + $(duration_secs "$AUDIT"))) -ge 55 ]; then
    LONG_NOTE="- The gate's runs lasted about a minute or more: the gate refreshes a session cookie older than 60 s on every response and wrk never stores the fresh one, so late responses also carried a \`Set-Cookie\` (work a browser would cause once a minute)."$'\n'
fi
GATE_LOG_PROBLEMS=$(grep -cE 'WARN|ERROR' "$GATE_DIR/gate.log" || true)
CPU_MODEL=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
CPU_MODEL=${CPU_MODEL:-unknown}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || COMMIT="$COMMIT + uncommitted changes in src/"

{
    cat <<EOF
# Benchmarks

Measured by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Re-run it to refresh this file.

## Setup

- Machine: $(nproc) CPUs ($CPU_MODEL), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)
- Software: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'), mfa-gate $COMMIT (release build)
- CPU busy in the second before the measurements, everything started and idle: $IDLE_BUSY% (well above 0 means something else on the machine was competing).
- Everything on 127.0.0.1 on the same machine: wrk, the console, the nginx proxy and the gate share the $(nproc) CPUs.
- Console: nginx (\`worker_processes auto\`) serving a $(wc -c <"$CONSOLE_DIR/www/index.html")-byte \`index.html\` behind \`auth_basic\` (\`{PLAIN}\` password file), access log off.
- nginx proxy: \`proxy_pass\` to the console over an upstream block with \`keepalive 64\`, HTTP/1.1, access log off.
- mfa-gate: \`serve --config\` with basic mode, the embedded store in a temp dir, default logging (info, to a file). One user enrolled through the real flow (curl: password → pending cookie → enrollment page → \`oathtool --totp\` → session cookie); wrk sends that session cookie and the Basic credentials, so every request is checked (cookie decrypted, binding to the password checked, enrollment and revocation looked up in the store) and then proxied.
- Each target: $([ "$WARMUP" != 0 ] && echo "a $WARMUP warm-up run (not recorded), then ")the measured run, then $([ "$AUDIT" != 0 ] && echo "a $AUDIT run with a Lua script that counts response statuses (wrk itself counts a 3xx as success, and a redirect to the login page would be a 3xx)" || echo "no status audit").
- Command (per target):

      $WRK_CMD

## Results

$TABLE

Checks on the same runs:

$CHECKS

- *Bytes/response*: bytes wrk read divided by requests (headers + body). The page is the same through every path; differences of a few dozen bytes are response headers (see the raw output below: nginx sends \`Connection: keep-alive\`, implied in HTTP/1.1, which the gate leaves out). A gate answering with its own pages (login redirect, error page) would show up as a clearly different size.
- *Status audit*: statuses counted by a Lua script in the short run after the measured one.
- *Proxy CPU/request*: CPU time (user + system) of the proxy's processes during the measured run divided by its requests — the nginx master and workers, or the gate.
- *Other CPU load*: CPU time used during the measured run by processes other than wrk, the two nginx instances and the gate, in % of all CPUs; above a few % the run competed with something else.
- Gate log during the whole run: $GATE_LOG_PROBLEMS WARN/ERROR lines.

EOF
    if [ -n "$PROBLEMS" ]; then
        echo "### Problems seen in this run"
        echo
        printf '%s\n' "$PROBLEMS"
    fi
    cat <<EOF
## Interpretation

- Any proxy hop costs: on this machine nginx's plain reverse proxy reached $NGINX_VS_DIRECT% of the direct rate and mfa-gate $GATE_VS_DIRECT%. The fair comparison for the gate is the nginx proxy, another hop with pooled upstream connections: the gate reached $GATE_VS_NGINX% of its rate, with a p99 of ${P99[gate]} ms against nginx's ${P99[nginx]} ms.
- The gate does more than forward: per request it decrypts and checks the session cookie, recomputes the password binding (a keyed hash), reads the user and the revocation list from the store, and rewrites forwarding headers; nginx only forwards. That shows in the CPU it spent: $(cpu_per_req gate) per request against nginx's $(cpu_per_req nginx).
- This is a worst case for the proxies' share: the console is a static file served by nginx with a plain-text password file, far cheaper per request than a typical admin console that renders its pages dynamically, and the machine's $(nproc) CPUs are shared by the load generator, the console and the proxy, so every CPU cycle a proxy spends shows as lost throughput. In front of a real console, the added latency per request (avg ${AVG[gate]} ms through the gate vs ${AVG[direct]} ms direct at $CONNECTIONS concurrent connections) matters more than the peak rate, and an admin console rarely sees more than a few requests per second.
${LONG_NOTE}- One short run on a small VM: rates move by 10% or more between runs (the nginx proxy's most of all), so read the ratios as approximate and compare runs only when the "other CPU load" column is near 0.

<details><summary>Raw wrk output</summary>

EOF
    for target in "${NAMES[@]}"; do
        echo "**${LABEL[$target]}**"
        echo
        echo '```'
        sed "s/Basic [A-Za-z0-9+\/=]*/Basic …/" "$TMP/wrk-$target.txt"
        echo '```'
        echo
        echo "Response headers (curl, before the run):"
        echo
        echo '```'
        sed 's/\r$//; s/^\([Ss]et-[Cc]ookie: [^=]*=\)[^;]*/\1…/' "$TMP/headers-$target.txt"
        echo '```'
        echo
    done
    echo "</details>"
} >"$OUTPUT"

echo
echo "$TABLE"
echo
echo "$CHECKS"
if [ -n "$PROBLEMS" ]; then
    echo
    echo "Problems:"
    printf '%s' "$PROBLEMS"
fi
echo
echo "Wrote $OUTPUT"
