-- Instance metadata: one row per key. Holds facts about this installation
-- (when it was created, schema notes) that are not part of the JobEngine.
CREATE TABLE IF NOT EXISTS instance_meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL  -- unix milliseconds
);

INSERT INTO instance_meta (key, value, updated_at)
VALUES ('created_at', (floor(extract(epoch FROM clock_timestamp()) * 1000))::BIGINT::TEXT,
        (floor(extract(epoch FROM clock_timestamp()) * 1000))::BIGINT)
ON CONFLICT (key) DO NOTHING;
