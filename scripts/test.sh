#!/usr/bin/env bash
# Sets up and runs every check and test:
#   formatting; clippy for the server build and for the wasm build (separately:
#   `ssr` and `hydrate` must never be compiled together); the Rust unit and
#   integration tests against SQLite and a throwaway PostgreSQL; a release
#   build; the Playwright suite in Debian's Chromium against that build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "setup"
scripts/setup.sh test

step "format"
cargo fmt --all -- --check

step "clippy (server build)"
cargo clippy -p kernel -p server -p app --all-targets -- -D warnings

step "clippy (wasm build)"
cargo clippy -p frontend -p app --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p kernel --no-default-features --target wasm32-unknown-unknown -- -D warnings

step "Rust tests (SQLite and PostgreSQL)"
SWITCHYARD_REQUIRE_POSTGRES=1 scripts/with-postgres.sh \
  cargo test -p kernel -p server -p app

step "release build"
scripts/build.sh

step "Playwright (Chromium)"
(cd end2end && npx playwright test)
