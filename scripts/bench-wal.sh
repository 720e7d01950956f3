#!/usr/bin/env bash
# What a batched drain writes to the WAL, Switchyard's and graphile-worker's,
# on one throwaway Postgres server (docs/benchmarks.md, "WAL per task").
#
#   scripts/bench-wal.sh [TASKS]      (default 50000)
#
# Needs a release kernel-bench (KERNEL_BENCH, default target/release/kernel-bench)
# and graphile-worker installed with npm in GW_DIR (default /tmp/gw; see
# docs/benchmarks.md "How to reproduce"; skipped when absent). For each, the
# WAL between the start and the end of its batched drain is summed by
# `pg_waldump --stats=record`, after a checkpoint and with checkpoints held
# off meanwhile; Switchyard's is also counted by relation.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${SWITCHYARD_TEST_POSTGRES_URL:-}" ]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi

tasks=${1:-50000}
bench=${KERNEL_BENCH:-target/release/kernel-bench}
gw_dir=${GW_DIR:-/tmp/gw}
url=$SWITCHYARD_TEST_POSTGRES_URL
base=${url%/*}
pg_bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
data=$(psql -tA "$url" -c "SHOW data_directory")
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
lsn() { psql -tA "$url" -c "SELECT pg_current_wal_insert_lsn()"; }
waldump() { as_postgres "$pg_bin/pg_waldump" -p "$data/pg_wal" -s "$1" -e "$2" "${@:3}" 2>/dev/null; }

# No checkpoint during a drain, and the WAL kept for pg_waldump after the
# checkpoint the bench's DROP DATABASE makes.
psql -q "$url" -c "ALTER SYSTEM SET max_wal_size = '20GB'" -c "ALTER SYSTEM SET wal_keep_size = '20GB'" \
  -c "ALTER SYSTEM SET checkpoint_timeout = '1h'" -c "SELECT pg_reload_conf()" >/dev/null

summary() {
  echo "== $1: $(psql -tA "$url" -c "SELECT pg_size_pretty(pg_wal_lsn_diff('$3', '$2'))") of WAL"
  waldump "$2" "$3" --stats=record | awk '/^Total/ || /Heap\/|Btree\// && $2 > 1000' | sort -k2 -n -r
}

psql -q "$url" -c "CHECKPOINT"
start='' end='' db=''
while IFS= read -r line; do
  case "$line" in
    *"batched drain of"*)
      start=$(lsn)
      db=$(psql -tA "$url" -c "SELECT datname FROM pg_database WHERE datname LIKE 'bench_%' ORDER BY oid DESC LIMIT 1")
      ;;
    *"batched drain done"*)
      end=$(lsn)
      # Its tables' names, while its database is there (the bench drops it).
      psql -tA "$base/$db" -c "SELECT pg_relation_filenode(oid) || ' ' || relname FROM pg_class WHERE relkind IN ('r', 'i')" >"$data/../relnames"
      ;;
    *drain_batched*) echo "$line" ;;
  esac
done < <("$bench" --postgres-only --tasks "$tasks" --pickups 10 2>&1)
summary switchyard "$start" "$end"
echo "-- by relation (records)"
waldump "$start" "$end" | python3 -c '
import collections, re, sys
names = dict(l.split() for l in open(sys.argv[1]) if len(l.split()) == 2)
n = collections.Counter()
for l in sys.stdin:
    m = re.search(r"rmgr: (\S+).*?desc: (\S+).*?blkref #0: rel \d+/\d+/(\d+)", l)
    if m:
        n[(m.group(1) + "/" + m.group(2), names.get(m.group(3), m.group(3)))] += 1
for (kind, rel), count in n.most_common(30):
    print(f"{count:9d} {kind:22s} {rel}")
' "$data/../relnames"

if [ -f "$gw_dir/graphile-drain.js" ]; then
  # The peer's own script, marking the start and the end of its drain.
  sed -e "s|const t1 = Date.now();|const t1 = Date.now(); console.error('DRAIN_START');|" \
      -e "s|const drainMs = Date.now() - t1;|const drainMs = Date.now() - t1; console.error('DRAIN_END');|" \
      "$gw_dir/graphile-drain.js" >"$gw_dir/graphile-drain-marked.js"
  psql -q "$url" -c "DROP DATABASE IF EXISTS gw" -c "CREATE DATABASE gw" -c "CHECKPOINT"
  while IFS= read -r line; do
    case "$line" in
      DRAIN_START*) start=$(lsn) ;;
      DRAIN_END*) end=$(lsn) ;;
      *peer*) echo "$line" ;;
    esac
  done < <(node "$gw_dir/graphile-drain-marked.js" "$base/gw" "$tasks" 24 500 2>&1)
  summary "graphile-worker, local queue 500" "$start" "$end"
else
  echo "(graphile-worker not found in $gw_dir: skipped)"
fi
