#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for a number of executions, from its committed
# seed corpus (fuzz/corpus/TARGET; what libFuzzer adds goes to a scratch directory), and
# prints executions per second and findings: a crashing input is written to
# fuzz/artifacts/TARGET/ and becomes a regression test.
#
#   benches/fuzz.sh [RUNS] [TARGET...]     (defaults: 10,000,000 runs of every target)
#
# Needs the nightly toolchain and cargo-fuzz (rustup toolchain install nightly;
# cargo install cargo-fuzz --locked). Every run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs=${1:-10000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gossip_datagram gossip_stream haproxy_cfg http_request scenario template_data)
fi
command -v cargo-fuzz >/dev/null || { echo "missing cargo-fuzz: cargo install cargo-fuzz --locked" >&2; exit 2; }
# Hours for the default count of the slowest target (about 5,000 executions a second).
limit=${FUZZ_TIMEOUT_S:-14400}
timeout 1800 cargo +nightly fuzz build -O >/dev/null 2>&1 || { echo "cargo fuzz build failed" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '%-16s %12s %9s %10s  %s\n' target runs seconds execs/s findings
status=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    set +e
    timeout "$limit" cargo +nightly fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
        -runs="$runs" -print_final_stats=1 >"$log" 2>&1
    code=$?
    set -e
    done_line=$(grep -a '^Done ' "$log" | tail -1 || true)
    done_runs=$(echo "$done_line" | awk '{print $2}')
    seconds=$(echo "$done_line" | awk '{print $5}')
    findings=$(ls "artifacts/$target" 2>/dev/null | wc -l)
    if [ -z "$done_line" ]; then
        # A crash or the time limit ends the run before its "Done" line.
        done_runs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
        seconds="-"
        echo "$target: stopped (exit $code); see the log below" >&2
        tail -30 "$log" >&2
        status=1
    fi
    rate=$( [ -n "$done_runs" ] && [ "$seconds" != "-" ] && [ "${seconds:-0}" -gt 0 ] && echo $((done_runs / seconds)) || echo "-")
    printf '%-16s %12s %9s %10s  %s\n' "$target" "${done_runs:--}" "${seconds:--}" "$rate" "$findings in fuzz/artifacts/$target"
done
exit $status
