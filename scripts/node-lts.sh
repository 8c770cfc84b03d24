#!/usr/bin/env bash
# Puts a current Node.js LTS into .cache/node-<line>/ from the npm registry's `node-linux-<arch>`
# package (the official Linux build, headers included), and prints that directory.
# CI (.ci/run) runs the tests with it: put <dir>/bin first in PATH and set npm_config_nodedir=<dir>,
# so node-gyp compiles native addons (better-sqlite3, hnswlib-node) against these headers instead of
# downloading them from nodejs.org. Usage: scripts/node-lts.sh [major line, default 24]
set -euo pipefail
cd "$(dirname "$0")/.."

line="${1:-24}"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "node-lts: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
version="$(npm view "node-linux-${arch}@${line}" version --json 2>/dev/null | node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log([].concat(v).pop())')"
dir="$PWD/.cache/node-${version}"
if [[ ! -x "$dir/bin/node" || ! -f "$dir/include/node/node_version.h" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-${arch}@${version}" >/dev/null)
  rm -rf "$dir" && mkdir -p "$dir"
  tar -xzf "$tmp"/node-linux-"${arch}"-*.tgz -C "$dir" --strip-components=1
fi
"$dir/bin/node" -e 'process.exit(0)'
echo "$dir"
