#!/usr/bin/env bash
# Re-vendors the web page's JavaScript dependencies from the npm registry into static/vendor/.
# The page is served by the node with no network access at run time, so its dependencies are
# committed as the packages' own built files, with each package's licence and the exact
# version and registry integrity recorded in static/vendor/VERSIONS.txt.
# Usage: node/webapp/revendor.sh  (needs npm; change a version below, run, review the diff).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# package@version  then the files taken from it (paths inside the package)
packages=(
    "lightweight-charts@5.3.0|dist/lightweight-charts.standalone.production.js"
    "@noble/ed25519@3.2.0|index.js"
    "@noble/hashes@2.4.0|sha2.js _md.js _u64.js utils.js"
    "@msgpack/msgpack@3.1.3|dist.umd/msgpack.min.js"
)

rm -rf "$out"
mkdir -p "$out"
{
    echo "# Vendored npm packages of the web page (written by node/webapp/revendor.sh)."
    echo "# directory | package@version | licence | npm integrity"
} > "$out/VERSIONS.txt"
for entry in "${packages[@]}"; do
    spec="${entry%%|*}"
    files="${entry#*|}"
    name="${spec%@*}"
    dir="$out/$(echo "${name#@}" | tr '/' '-')"
    mkdir -p "$dir" "$work/$dir"
    (cd "$work/$dir" && npm pack --silent "$spec" > /dev/null && tar xzf ./*.tgz)
    for f in $files; do
        # The source-map comment names a file that is not vendored; drop it.
        sed '/^\/\/# sourceMappingURL=/d' "$work/$dir/package/$f" > "$dir/$(basename "$f")"
    done
    cp "$work/$dir/package/LICENSE" "$dir/LICENSE"
    licence="$(npm view "$spec" license)"
    integrity="$(npm view "$spec" dist.integrity)"
    echo "$(basename "$dir") | $spec | $licence | $integrity" >> "$out/VERSIONS.txt"
done
echo "vendored into $out:"
cat "$out/VERSIONS.txt"
