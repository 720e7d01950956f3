-- Instance metadata: one row per key. Holds facts about this installation
-- (when it was created, schema notes) that are not part of the JobEngine.
CREATE TABLE IF NOT EXISTS instance_meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL  -- unix milliseconds
);

INSERT OR IGNORE INTO instance_meta (key, value, updated_at)
VALUES ('created_at', CAST(CAST(unixepoch('subsec') * 1000 AS INTEGER) AS TEXT), CAST(unixepoch('subsec') * 1000 AS INTEGER));
