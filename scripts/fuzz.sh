#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a fixed time, one after the other, on one core.
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=120 scripts/fuzz.sh route config
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target
# runs as a single libFuzzer job (-jobs=1 -workers=1, so one core) with -rss_limit_mb=2048,
# over fuzz/corpus/TARGET (grown by the run, not committed) and fuzz/seeds/TARGET (the
# committed seeds, read only), with fuzz/dict/TARGET.dict when there is one. Crashing
# inputs land in fuzz/artifacts/TARGET/ (with last-run.log). Prints one line per target:
# seconds fuzzed (libFuzzer's count), wall seconds, executions, crashes; exits 1 if any
# target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
fuzz="$root/fuzz"
seconds=${FUZZ_SECONDS:-60}
all=(session_cookie route return_to config form_parsers codes user_names login_differential)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
}

echo "Building the fuzz targets (nightly, sanitizer=address)…"
for t in "${targets[@]}"; do
    cargo +nightly fuzz build --fuzz-dir "$fuzz" "$t"
done

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
results=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
    before=$(find "$fuzz/artifacts/$t" -type f ! -name last-run.log | wc -l)
    args=(-max_total_time="$seconds" -jobs=1 -workers=1 -rss_limit_mb=2048)
    [ -f "$fuzz/dict/$t.dict" ] && args+=(-dict="$fuzz/dict/$t.dict")
    corpora=("$fuzz/corpus/$t")
    [ -d "$fuzz/seeds/$t" ] && corpora+=("$fuzz/seeds/$t")
    echo "== $t: ${seconds}s"
    start=$(date +%s)
    # libFuzzer's job mode writes the worker's output to fuzz-0.log in the working
    # directory (and copies it to stderr when the job ends); run from a scratch directory
    # so that file lands there.
    set +e
    (cd "$logs" && rm -f fuzz-0.log &&
        cargo +nightly fuzz run --fuzz-dir "$fuzz" "$t" "${corpora[@]}" -- "${args[@]}") \
        >"$logs/$t.out" 2>&1
    rc=$?
    set -e
    elapsed=$(($(date +%s) - start))
    cp "$logs/$t.out" "$fuzz/artifacts/$t/last-run.log"
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$logs/$t.out" | tail -1 || true)
    runs=$(echo "$done_line" | awk '{print $2}')
    fuzzed=$(echo "$done_line" | awk '{print $5}')
    # After a crash there is no "Done" line: the last status line has the count.
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$logs/$t.out" | tail -1 | tr -d '#' || true)
    after=$(find "$fuzz/artifacts/$t" -type f ! -name last-run.log | wc -l)
    crashes=$((after - before))
    ((crashes >= 0)) || crashes=0
    if ((rc != 0)) && ((crashes == 0)); then crashes=1; fi
    if ((crashes > 0)); then
        failed=1
        echo "   CRASH (exit $rc) — see fuzz/artifacts/$t/ and its last-run.log:"
        grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written' "$logs/$t.out" | head -5 | sed 's/^/   /'
    fi
    results+=("$(printf '%-16s %8s %8s %14s %8s' "$t" "${fuzzed:-?}" "$elapsed" "${runs:-?}" "$crashes")")
done

echo
# fuzzed_s: libFuzzer's own count (to a crash, or max_total_time); wall_s: the whole run.
printf '%-16s %8s %8s %14s %8s\n' target fuzzed_s wall_s executions crashes
printf '%s\n' "${results[@]}"
exit "$failed"
