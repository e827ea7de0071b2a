#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer and under ThreadSanitizer, each
# with its own scratch path (so neither disturbs the normal .build), and exits
# non-zero if either fails.
#
#   Tools/sanitizers.sh [asan|tsan|both]        (default both)
#
# Both run every test; the `slotstore` processes the tests start are built
# with the same sanitizer. TSAN_FILTER (a `swift test --filter` pattern)
# narrows the TSan run, e.g. to the tests where threads of one process share a
# store: TSAN_FILTER='threadsShareOneStore|closeWaitsForTransaction'.
# Note: Swift's TSan sees Swift variables, globals and class properties, but
# not accesses through raw pointers or memcpy, so it cannot see races on the
# mapped store bytes themselves; the seqlocks are covered by the torture and
# tear-detecting tests instead.
# Each sanitizer's build and test output goes to $SANITIZER_LOGS/{asan,tsan}.log
# (default /tmp/slotstore-sanitizers). Both together take about 3 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."

which="${1:-both}"
logs="${SANITIZER_LOGS:-/tmp/slotstore-sanitizers}"
asan_scratch="${ASAN_SCRATCH:-.build-asan}"
tsan_scratch="${TSAN_SCRATCH:-.build-tsan}"
tsan_filter="${TSAN_FILTER:-}"
mkdir -p "$logs"

# The Swift backtracer is off so the sanitizers print their own reports.
# LeakSanitizer is off: the Swift runtime keeps metadata caches until exit.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1}"

status=0
run() {
    local name="$1"; shift
    local start=$(date +%s)
    echo "== $name: $*"
    if "$@" > "$logs/$name.log" 2>&1; then
        echo "== $name passed in $(( $(date +%s) - start )) s (log: $logs/$name.log)"
    else
        echo "== $name FAILED in $(( $(date +%s) - start )) s (log: $logs/$name.log)"
        grep -E "ERROR: (Address|Thread)Sanitizer|WARNING: ThreadSanitizer|SUMMARY: |✘|error:" "$logs/$name.log" | sort | uniq -c | sort -rn | head -20
        status=1
    fi
    # A sanitizer report in a child process does not always fail the test that started it.
    if grep -qE "ERROR: AddressSanitizer|WARNING: ThreadSanitizer" "$logs/$name.log"; then
        echo "== $name: sanitizer reports found:"
        grep -E "SUMMARY: " "$logs/$name.log" | sort | uniq -c | sort -rn | head -20
        status=1
    fi
}

if [ "$which" = asan ] || [ "$which" = both ]; then
    run asan swift test --sanitize=address --scratch-path "$asan_scratch"
fi
if [ "$which" = tsan ] || [ "$which" = both ]; then
    run tsan swift test --sanitize=thread --scratch-path "$tsan_scratch" ${tsan_filter:+--filter "$tsan_filter"}
fi
exit $status
