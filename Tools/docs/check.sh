#!/usr/bin/env bash
# Docs that can't rot: compiles every ```swift block of README.md and of the DocC
# catalog (Sources/SlotStore/SlotStore.docc/*.md) against the library, and builds
# the catalog with `docc convert --warnings-as-errors` (so a broken ``symbol`` or
# <doc:…> link fails). Toolchain only: bash, awk, swift, docc. `.ci/run` runs it.
#
#   Tools/docs/check.sh                 check; exit 1 when a snippet or the docs fail
#   Tools/docs/check.sh --html DIR      check, and write the HTML documentation to DIR
#                                       (a static site: serve DIR, e.g. `python3 -m
#                                       http.server -d DIR`, then open
#                                       http://localhost:8000/documentation/slotstore)
#   Tools/docs/check.sh --preview       check, then serve the docs with `docc preview`
#
# Works offline. Its package and build live in .build/docs (DOCS_WORK to move
# them), so a second run only recompiles what changed (about 5 s; 30-60 s cold).
#
# How blocks are compiled:
# - The README's dependency block, marked <!-- snippet: manifest --> (a whole
#   Package.swift), is the manifest of the package that compiles the snippets,
#   with its `path:` pointing at this checkout through a folder named
#   `checkout`, so the block is proven to work whatever the checkout is called.
#   Every other manifest block must be identical to the first.
# - Every other ```swift block becomes the body of its own function in a file of
#   that package's first executable target, so blocks don't see each other's
#   names; `import SlotStore` is implied, imports move to the top of the file, and `#sourceLocation` makes
#   errors point at README.md:LINE. Compiled means type-checked and built, not
#   run: a snippet's paths and side effects are never touched.
# - Compiler errors and deprecation warnings fail the check; other warnings (a
#   snippet's unused `let`) don't.
#
# Markdown conventions: an HTML comment directly before a block (blank lines
# and other snippet comments may come between; GitHub and DocC show nothing):
#   <!-- snippet: fragment -->      not compiled: part of a file, pseudo-code
#   <!-- snippet: top-level -->     declarations compiled at file scope
#                                   (extensions, protocols), not in a function
#   <!-- snippet: manifest -->      a whole Package.swift (see above)
#   <!-- snippet-context: CODE -->  Swift compiled before the block, in its
#                                   function: the names the prose assumes, such as
#                                   `let store = …`; may span several lines
#   <!-- snippet-file-context: CODE -->  compiled before every later block of the
#                                   same file (a block may shadow its names)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work=${DOCS_WORK:-$root/.build/docs}
html=""
preview=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --html) [[ $# -ge 2 ]] || { echo "check.sh: --html needs a directory" >&2; exit 2; }
                html=$2; shift 2 ;;
        --preview) preview=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -n $html ]]; then
    mkdir -p "$html"
    html=$(cd "$html" && pwd)
fi
docc=${DOCC:-$(command -v docc || true)}
if [[ -z $docc ]]; then
    docc="$(dirname "$(readlink -f "$(command -v swift)")")/docc"
fi
[[ -x $docc ]] || { echo "check.sh: docc not found next to swift; set DOCC=/path/to/docc" >&2; exit 2; }

cd "$root"
catalog=Sources/SlotStore/SlotStore.docc
documents=(README.md "$catalog"/*.md)
failures=0

# 1. Extract the blocks.
extract="$work/extract"
rm -rf "$extract"
mkdir -p "$extract/snippets" "$extract/manifests"
awk -v out="$extract" -f Tools/docs/extract-snippets.awk "${documents[@]}" || {
    echo "docs: the snippet comments above are malformed" >&2
    exit 1
}
count() { awk -F'\t' -v kind="$1" '$3 == kind' "$extract/index.tsv" | wc -l | tr -d ' '; }
echo "docs: ${#documents[@]} documents: $(count compiled) blocks to compile, $(count top-level) top-level," \
    "$(count manifest) manifest, $(count fragment) fragments skipped"

# 2. The package: the first manifest block, depending on this checkout under another folder name.
# In document order, so the README's block is the one the others must match.
mapfile -t manifests < <(awk -F'\t' '$3 == "manifest" { print $4 }' "$extract/index.tsv")
[[ ${#manifests[@]} -gt 0 ]] || {
    echo "docs: no <!-- snippet: manifest --> block: the README must show the Package.swift that depends on SlotStore" >&2
    exit 1
}
first=${manifests[0]}
where() { awk -F'\t' -v file="$1" '$4 == file { print $1 ":" $2 }' "$extract/index.tsv"; }
for manifest in "${manifests[@]:1}"; do
    if ! cmp -s "$first" "$manifest"; then
        echo "docs: $(where "$manifest"): this manifest block differs from the one at $(where "$first"); make them identical" >&2
        diff "$first" "$manifest" >&2 || true
        failures=$((failures + 1))
    fi
done
package="$work/package"
mkdir -p "$package"
ln -sfn "$root" "$work/checkout"
dependency_lines=$(grep -c '\.package(.*path: *"' "$first" || true)
if [[ $dependency_lines != 1 ]]; then
    echo "docs: $(where "$first"): the manifest block must have exactly one .package(…path: \"…\") line (found $dependency_lines)" >&2
    exit 1
fi
sed "/\.package(.*path: *\"/ s|path: *\"[^\"]*\"|path: \"$work/checkout\"|" "$first" > "$package/Package.swift.new"
cmp -s "$package/Package.swift.new" "$package/Package.swift" 2>/dev/null \
    && rm "$package/Package.swift.new" || mv "$package/Package.swift.new" "$package/Package.swift"
target=$(sed -n 's/.*executableTarget(name: *"\([^"]*\)".*/\1/p' "$package/Package.swift" | head -n 1)
[[ -n $target ]] || { echo "docs: $(where "$first"): the manifest block declares no .executableTarget(name: …)" >&2; exit 1; }

# Only files whose text changed are rewritten, so an unchanged snippet is not recompiled.
sources="$package/Sources/$target"
mkdir -p "$sources"
printf '// Every other file here is a documentation snippet, wrapped in a function that nothing calls.\n' > "$extract/main.swift"
for generated in "$extract/main.swift" "$extract"/snippets/*.swift; do
    [[ -e $generated ]] || continue
    cmp -s "$generated" "$sources/${generated##*/}" 2>/dev/null || cp "$generated" "$sources/"
done
for existing in "$sources"/*.swift; do
    name=${existing##*/}
    [[ $name == main.swift || -e "$extract/snippets/$name" ]] || rm "$existing"
done

# 3. Build it, with SlotStore's symbol graph for DocC as a by-product.
graphs="$work/symbol-graphs"
mkdir -p "$graphs"
build() {
    swift build --package-path "$package" -Xswiftc -diagnostic-style=llvm \
        -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs" > "$work/build.log" 2>&1
}
build_status=0
build || build_status=$?
if [[ $build_status == 0 && ! -e $graphs/SlotStore.symbols.json ]]; then
    # The graph is written only when the module compiles; a removed one needs a clean build.
    rm -rf "$package/.build"
    build || build_status=$?
fi
# Diagnostics point into the Markdown (README.md:LINE) thanks to #sourceLocation.
if [[ $build_status != 0 ]] || grep -q 'warning: .*deprecated' "$work/build.log"; then
    echo "docs: the snippet package does not build (full log: $work/build.log):" >&2
    # Compiler diagnostics (README.md:LINE:COLUMN: error: …), then SwiftPM's own (a manifest that
    # doesn't resolve, such as "unknown package"), each once.
    grep -E '^[^ ].*:[0-9]+:[0-9]+: (error|warning: .*deprecated)' "$work/build.log" | sort -u -t: -k1,1 -k2,2n >&2 || true
    grep -E '^error: ' "$work/build.log" | grep -vE '^error: (fatalError|ExitCode\()' | awk '!seen[$0]++' >&2 || true
    failures=$((failures + 1))
else
    # Unused names are in the nature of snippets (and of the file contexts); show anything else.
    other=$(grep -E '^[^ ].*:[0-9]+:[0-9]+: warning:' "$work/build.log" \
        | grep -vE 'never used|never read|never mutated' | sort -u || true)
    echo "docs: every snippet compiles (log in $work/build.log)"
    [[ -z $other ]] || { echo "docs: warnings (not fatal):"; echo "$other"; }
fi

# 4. DocC, warnings as errors.
if [[ -e $graphs/SlotStore.symbols.json ]]; then
    library_graphs="$work/symbol-graphs-slotstore"
    rm -rf "$library_graphs"
    mkdir -p "$library_graphs"
    cp "$graphs"/SlotStore.symbols.json "$graphs"/SlotStore@*.symbols.json "$library_graphs/" 2>/dev/null \
        || cp "$graphs"/SlotStore.symbols.json "$library_graphs/"
    output=${html:-$work/docc-output}
    docc_arguments=("$catalog" --additional-symbol-graph-dir "$library_graphs"
        --fallback-display-name SlotStore --fallback-bundle-identifier SlotStore
        --output-path "$output" --transform-for-static-hosting --warnings-as-errors)
    if "$docc" convert "${docc_arguments[@]}" > "$work/docc.log" 2>&1; then
        echo "docs: docc convert: no warnings${html:+; HTML in $html (serve it, then open /documentation/slotstore)}"
    else
        echo "docs: docc convert failed (warnings are errors; full log: $work/docc.log):" >&2
        cat "$work/docc.log" >&2
        failures=$((failures + 1))
    fi
else
    echo "docs: no symbol graph for SlotStore (the library did not build), so DocC was not run" >&2
    failures=$((failures + 1))
fi

if [[ $failures != 0 ]]; then
    echo "docs: $failures check(s) failed" >&2
    exit 1
fi
if [[ $preview == 1 ]]; then
    # Its own output folder: by default `docc preview` writes into the catalog.
    exec "$docc" preview "$catalog" --additional-symbol-graph-dir "$library_graphs" \
        --fallback-display-name SlotStore --fallback-bundle-identifier SlotStore --output-path "$work/preview"
fi
