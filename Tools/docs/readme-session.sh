#!/usr/bin/env bash
# Prints the README's `verify`/`repair` session, run for real: a `set` SIGKILLed
# in the middle of its locked write (the SLOTSTORE_FAULT test hook), then
# inspect, verify, repair, verify, get. Paste its output into the README when
# the tool's messages change (PIDs, sizes and times differ from run to run).
#
#   Tools/docs/readme-session.sh [PATH-TO-slotstore]    (default: builds and uses the debug one)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $# -ge 1 ]]; then
    tool=$(readlink -f "$1")
else
    swift build --package-path "$root" --product slotstore >&2
    tool="$root/.build/debug/slotstore"
fi
session=$(mktemp -d "${TMPDIR:-/tmp}/slotstore-session-XXXXXX")
trap 'rm -rf "$session"' EXIT
cd "$session"
cat > app.json <<'EOF'
{"version": 1, "fields": [
  {"name": "requests", "type": "int64"},
  {"name": "load", "type": "double"},
  {"name": "latency", "type": "array", "of": "double", "count": 64},
  {"name": "motd", "type": "string", "capacity": 128}
]}
EOF

# Each command as the README shows it, then its output and, where it matters, its status.
run() {
    local shown="\$ slotstore" argument
    for argument in "$@"; do
        [[ $argument == *" "* ]] && shown+=" \"$argument\"" || shown+=" $argument"
    done
    echo "$shown"
    "$tool" "$@" || echo "(exit status $?)"
}
run create app.slots --schema app.json
run set app.slots requests 42
run set app.slots motd "all systems go"
echo '$ SLOTSTORE_FAULT=midWrite:kill slotstore set app.slots motd "maintenance at 02:00"'
status=0
# (Inside braces whose standard error is discarded, so bash's own "Killed" notice goes too.)
{ SLOTSTORE_FAULT=midWrite:kill "$tool" set app.slots motd "maintenance at 02:00" || status=$?; } 2>/dev/null
[[ $status == 137 ]] || { echo "readme-session.sh: expected the set to die of SIGKILL (137), got $status" >&2; exit 1; }
echo "Killed"
run inspect app.slots
echo '$ slotstore verify app.slots'
status=0
"$tool" verify app.slots || status=$?
echo '$ echo $?'
echo "$status"
run repair app.slots
run verify app.slots
run get app.slots motd
