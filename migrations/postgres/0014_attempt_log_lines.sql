-- How many lines each attempt's log holds, so that an append can stop at
-- the cap (`KernelConfig::max_log_lines_per_attempt`) without counting
-- them: a command printing in a loop would otherwise fill the database.
ALTER TABLE attempts ADD COLUMN log_lines BIGINT NOT NULL DEFAULT 0;
UPDATE attempts a SET log_lines = c.n
FROM (SELECT attempt_id, COUNT(*) AS n FROM attempt_logs GROUP BY attempt_id) c
WHERE a.id = c.attempt_id;
