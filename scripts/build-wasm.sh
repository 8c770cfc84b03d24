#!/usr/bin/env bash
# Builds the WebAssembly kernels (src/image/wasm/*.c) into the committed .wasm files. Needs clang
# and lld with the wasm32 target (Debian: apt-get install clang lld). test/integral.test.ts checks
# that the committed file is what this script builds from the source: byte for byte under the clang
# recorded in compiler.txt (the one the committed files were built with), and by the tables it
# computes under any other clang, whose code generation may differ without being wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
build() {
  clang --target=wasm32 -O3 -msimd128 -nostdlib -fno-ident -ffp-contract=off \
    -Wl,--no-entry -Wl,--export=__heap_base -Wl,--strip-all \
    -o "${2}" "${1}"
}
for src in src/image/wasm/*.c; do
  out="${OUT_DIR:-src/image/wasm}/$(basename "${src%.c}").wasm"
  build "$src" "$out"
  echo "built $out"
done
clang --version | head -n 1 > "${OUT_DIR:-src/image/wasm}/compiler.txt"
