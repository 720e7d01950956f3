#!/usr/bin/env bash
# Starts the release `switchyard` for the Playwright run: from an unrelated
# temp directory (the binary must find its site next to itself), on a fresh
# SQLite database.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${1:?port}
BIN="$ROOT/target/release/switchyard"
[ -x "$BIN" ] || { echo "no release build at $BIN: run scripts/build.sh" >&2; exit 1; }
WORK=$(mktemp -d /tmp/switchyard-e2e.XXXXXX)
cd "$WORK"
exec "$BIN" serve --addr "127.0.0.1:$PORT" --database-url "sqlite:$WORK/e2e.db"
