# Shell helpers shared by scripts/bench.sh and scripts/bench-store.sh (sourced, not run):
# free ports, waiting for a server, durations, the machine's CPU load and the wait for a
# quiet machine (MAX_OTHER, IDLE_WAIT, WAIT_BUDGET, WAITED), and number formatting. The
# sourcing script defines `die`.
# shellcheck shell=bash
free_port() { # a port nobody listens on now (racy, but everything binds at once)
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 40000))
        case " ${TAKEN_PORTS:-} " in *" $port "*) continue ;; esac
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { TAKEN_PORTS="${TAKEN_PORTS:-} $port" && echo "$port" && return 0; }
    done
    die "no free port found"
}
wait_http() { # $1 port, $2 name, $3 log: until the port answers HTTP at all, up to 20 s
    for _ in $(seq 200); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    cat "$3" >&2 || true
    die "$2 did not start on port $1"
}
duration_secs() { case $1 in *s) echo "${1%s}" ;; *m) echo $((${1%m} * 60)) ;; *) echo "$1" ;; esac; }
system_ticks() { # "busy total" over all CPUs (steal counts as busy: someone else)
    awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat
}
cpu_busy_percent() { # busy share of all CPUs over one second
    local a b
    a=$(system_ticks) && sleep 1 && b=$(system_ticks)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
        if (t > 0) printf "%.0f", 100 * (y[1] - x[1]) / t; else print 0 }'
}
wait_quiet() { # bounded wait for the machine to calm down; sets BUSY, fails if still busy
    local waited=0
    BUSY=$(cpu_busy_percent)
    while [ "$BUSY" -gt "$MAX_OTHER" ]; do
        [ "$waited" -lt "$IDLE_WAIT" ] && [ "$WAITED" -lt "$WAIT_BUDGET" ] || return 1
        echo "    the machine is busy ($BUSY% CPU); waiting ($waited/$IDLE_WAIT s, $WAITED/$WAIT_BUDGET s in all)"
        sleep 4
        waited=$((waited + 5)) WAITED=$((WAITED + 5))
        BUSY=$(cpu_busy_percent)
    done
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }
median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "?"; else if (NR % 2) print a[(NR + 1) / 2]
    else printf "%.10g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
commas() { awk -v v="$1" 'BEGIN { n = sprintf("%.0f", v); s = ""
    while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) }
    print n s }'; }
