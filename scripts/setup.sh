#!/usr/bin/env bash
# Installs what building (and, with `test`, testing) Switchyard needs.
#
#   scripts/setup.sh          # build tools: wasm target, cargo-leptos, wasm-bindgen CLI, wasm-opt
#   scripts/setup.sh test     # the above, plus Chromium, PostgreSQL and the Playwright packages
#
# Idempotent: every step checks first and skips what is already present, so a
# second run takes seconds. Only the package registries are used (crates.io,
# npm, Debian); nothing is downloaded from anywhere else. See
# ../shared/TOOLCHAIN.md for why each pin is what it is.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-build}
CARGO_LEPTOS_VERSION=0.3.10
BINARYEN_VERSION=132.0.0

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; exit 1
  fi
}

apt_updated=false
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = false ]; then
    say "apt-get update"
    as_root apt-get update -qq
    apt_updated=true
  fi
  say "installing ${missing[*]} (Debian)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Rust: the wasm target -------------------------------------------------
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# --- cargo-leptos (no_downloads: use tools on PATH, never fetch binaries) ---
if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 10 minutes on 2 cores)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

# --- wasm-bindgen CLI: exactly the wasm-bindgen version in Cargo.lock --------
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock")
if [ -z "$WBG_VERSION" ]; then
  say "cannot read the wasm-bindgen version from Cargo.lock"; exit 1
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WBG_VERSION\$"; then
  say "installing wasm-bindgen-cli $WBG_VERSION"
  cargo install wasm-bindgen-cli --version "$WBG_VERSION" --force
fi

# --- wasm-opt from npm's binaryen (Debian's is too old to produce working wasm)
if [ ! -x "$ROOT/.tools/node_modules/.bin/wasm-opt" ] \
  || ! "$ROOT/.tools/node_modules/.bin/wasm-opt" --version | grep -q "version ${BINARYEN_VERSION%%.*}"; then
  say "installing binaryen $BINARYEN_VERSION (wasm-opt) from npm into .tools/"
  mkdir -p "$ROOT/.tools"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "binaryen@$BINARYEN_VERSION" >/dev/null
fi

if [ "$MODE" = test ]; then
  # --- Chromium for Playwright, PostgreSQL for the storage tests -----------
  apt_install chromium postgresql
  # Debian starts a cluster of its own on install; the tests use throwaway
  # clusters instead (scripts/with-postgres.sh), so the packaged one is not needed.

  # --- Playwright (the test runner only: browsers come from Debian) --------
  if [ ! -d "$ROOT/end2end/node_modules/@playwright/test" ] \
    || [ "$ROOT/end2end/package-lock.json" -nt "$ROOT/end2end/node_modules/.package-lock.json" ]; then
    say "installing the Playwright test runner (npm ci in end2end/)"
    (cd "$ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund >/dev/null)
  fi
elif [ "$MODE" != build ]; then
  say "unknown mode '$MODE' (expected: build or test)"; exit 2
fi

say "ready ($MODE)"
