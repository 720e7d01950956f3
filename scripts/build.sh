#!/usr/bin/env bash
# Release build of the whole product: the `switchyard` binary and its site
# (wasm optimised by wasm-opt, js, css, public files) in target/site. Prints
# the size of the wasm bundle, raw and gzipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

# cargo-leptos runs wasm-opt on release builds and fails without one.
printf 'wasm-opt: %s (%s)\n' "$(command -v wasm-opt)" "$(wasm-opt --version)"
cargo leptos build --release

wasm=$(ls target/site/pkg/*.wasm | head -n 1)
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf 'wasm bundle: %s — %d KiB raw, %d KiB gzip (SPEC §8 budget: 400 KB gzip)\n' \
  "$(basename "$wasm")" $((raw / 1024)) $((gz / 1024))
