#!/usr/bin/env bash
# Balancer speed, in one run on loopback: wrk against nginx directly, against real HAProxy 2.6
# and against `rollcall balancer`, both proxies on the same haproxy.cfg with nginx behind
# them. Prints req/s, p99 and the proxy's CPU time per request (user and system, from
# /proc: the figure least moved by the other processes sharing the cores) per target (median
# of the rounds), and rollcall/HAProxy ratios.
#
#   benches/balancer.sh [ROUNDS] [SECONDS]      (defaults: 2 rounds of 8 s per target)
#
# Needs wrk, nginx and haproxy (Debian: apt-get install -y wrk nginx-light haproxy); it
# builds rollcall with the `dist` profile (cargo build --profile dist --bin rollcall). Everything it starts is killed on
# exit; every step is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
seconds=${2:-8}
for tool in wrk nginx haproxy; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx-light haproxy" >&2; exit 2; }
done
timeout 900 cargo build --profile dist --bin rollcall --locked >/dev/null 2>&1
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

front=127.0.63.1:18090
cat >"$work/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server { listen 127.0.63.2:18091; location / { return 200 "hello from s1\n"; } }
    server { listen 127.0.63.3:18091; location / { return 200 "hello from s2\n"; } }
}
NGINX
cat >"$work/haproxy.cfg" <<CFG
defaults
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s

frontend web
    bind $front
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk HEAD /
    server s1 127.0.63.2:18091 check
    server s2 127.0.63.3:18091 check
CFG
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

# Waits until a TCP port answers HTTP, at most 10 s.
wait_http() {
    for _ in $(seq 1 100); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1#*:}" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One wrk run against $1: prints "req/s p99_ms cpu_us_per_request", the last for process $2
# (0 when there is no process to watch).
measure() {
    local before=0 after=0
    [ "$2" = 0 ] || before=$(cpu_ticks "$2")
    local out
    out=$(timeout $((seconds + 30)) wrk -t2 -c64 -d"${seconds}s" --latency "http://$1/")
    [ "$2" = 0 ] || after=$(cpu_ticks "$2")
    echo "$out" | awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ { total = $1 }
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ { v = $2; if (v ~ /us$/) ms = v / 1000; else if (v ~ /ms$/) ms = v + 0; else if (v ~ /s$/) ms = v * 1000; p99 = ms }
        END { printf "%.0f %.3f %.1f\n", rps, p99, total ? ticks * 1e6 / hz / total : 0 }'
}

# Runs a proxy in the background, measures it, stops it.
measure_proxy() {
    "$@" >/dev/null 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_http "$front"
    sleep 2 # let the first health checks pass
    measure "$front" "$pid"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

wait_http 127.0.63.2:18091
declare -A results
for round in $(seq 1 "$rounds"); do
    results[nginx]+="$(measure 127.0.63.2:18091 0);"
    results[haproxy]+="$(measure_proxy haproxy -f "$work/haproxy.cfg");"
    results[rollcall]+="$(measure_proxy target/dist/rollcall balancer --config "$work/haproxy.cfg");"
    echo "round $round done" >&2
done

median() { tr ';' '\n' | awk -v col="$1" 'NF { print $col }' | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf "%-10s %12s %10s %14s   (wrk -t2 -c64 -d%ss, median of %s rounds)\n" target "req/s" "p99 ms" "CPU us/req" "$seconds" "$rounds"
for target in nginx haproxy rollcall; do
    printf "%-10s %12s %10s %14s\n" "$target" "$(echo "${results[$target]}" | median 1)" \
        "$(echo "${results[$target]}" | median 2)" "$(echo "${results[$target]}" | median 3)"
done
ratio() { awk -v a="$(echo "${results[rollcall]}" | median "$1")" -v b="$(echo "${results[haproxy]}" | median "$1")" 'BEGIN { printf "%.2f", a / b }'; }
echo "rollcall/haproxy: req/s $(ratio 1)x, p99 $(ratio 2)x, CPU per request $(ratio 3)x"
