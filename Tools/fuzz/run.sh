#!/usr/bin/env bash
# Builds the libFuzzer target (the library sources and FuzzTarget.swift in one
# module, with -sanitize=fuzzer,address) and runs it.
#
#   Tools/fuzz/run.sh [SECONDS] [more libFuzzer options]
#
# SECONDS defaults to 60. The corpus, crash artifacts and the binary live in
# $FUZZ_DIR (default /tmp/slotstore-fuzz), so a later run continues from the
# corpus. A crash leaves an input in $FUZZ_DIR/artifacts/ and exits non-zero;
# reproduce with: $FUZZ_DIR/slotstore-fuzz $FUZZ_DIR/artifacts/crash-...
# To keep going past crashes: Tools/fuzz/run.sh 600 -fork=2 -ignore_crashes=1
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${1:-60}"
shift || true
dir="${FUZZ_DIR:-/tmp/slotstore-fuzz}"
mkdir -p "$dir/corpus" "$dir/artifacts"

# Compile a snapshot, so edits made meanwhile can't break the build.
rm -rf "$dir/src" && mkdir -p "$dir/src"
cp -R Sources/SlotStore "$dir/src/SlotStore"
cp Tools/fuzz/FuzzTarget.swift "$dir/src/"
mapfile -t sources < <(find "$dir/src/SlotStore" -name '*.swift' | sort)
echo "building $dir/slotstore-fuzz from ${#sources[@]} library sources" >&2
start=$(date +%s)
# gold warns once per ASan helper symbol; those lines are noise.
swiftc -sanitize=fuzzer,address -parse-as-library -O -g \
    -module-name SlotStore -swift-version 6 \
    "${sources[@]}" "$dir/src/FuzzTarget.swift" \
    -o "$dir/slotstore-fuzz" 2>&1 | { grep -v "Cannot export local symbol" || true; }
test "${PIPESTATUS[0]}" -eq 0
echo "built in $(( $(date +%s) - start )) s; fuzzing for $seconds s" >&2

# Leak checking is off: the Swift runtime keeps caches alive until exit. The
# Swift backtracer is off so that libFuzzer and ASan report a crash themselves.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}"
export SLOTSTORE_FUZZ_SEEDS="$dir/corpus"
exec "$dir/slotstore-fuzz" "$dir/corpus" \
    -max_total_time="$seconds" -max_len=262144 -timeout=20 -rss_limit_mb=4096 \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1 "$@"
