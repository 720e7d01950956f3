#!/usr/bin/env bash
# Sets up, builds and runs Switchyard on the embedded SQLite default
# (./data/switchyard.db, created and migrated on first start).
# Extra arguments go to `switchyard serve` (see `--help`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh" build
"$ROOT/scripts/build.sh"
cd "$ROOT"
exec "$ROOT/target/release/switchyard" serve "$@"
