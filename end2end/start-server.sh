#!/usr/bin/env bash
# Starts the release `switchyard` for the Playwright run: from an unrelated
# temp directory (the binary must find its site next to itself), on a fresh
# SQLite database with two console users: `admin` (every scope, every
# tenant) and `viewer` (runs.read only). Their passwords are in
# tests/fixtures.ts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${1:?port}
# SWITCHYARD_BIN: another build to run (e.g. a copy, with its `site/`
# beside it, to bench two builds side by side).
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
[ -x "$BIN" ] || { echo "no release build at $BIN: run scripts/build.sh" >&2; exit 1; }
WORK=$(mktemp -d /tmp/switchyard-e2e.XXXXXX)
cd "$WORK"
DB="sqlite:$WORK/e2e.db"
SWITCHYARD_PASSWORD=e2e-admin-password "$BIN" users add admin --scope admin --tenant '*' --database-url "$DB" >/dev/null
SWITCHYARD_PASSWORD=e2e-viewer-password "$BIN" users add viewer --scope runs.read --tenant '*' --database-url "$DB" >/dev/null
export SWITCHYARD_ENROLLMENT_SECRET=e2e-enrollment-secret
exec "$BIN" serve --addr "127.0.0.1:$PORT" --database-url "$DB"
