-- How many lines each attempt's log holds, so that an append can stop at
-- the cap (`KernelConfig::max_log_lines_per_attempt`) without counting
-- them: a command printing in a loop would otherwise fill the database.
ALTER TABLE attempts ADD COLUMN log_lines INTEGER NOT NULL DEFAULT 0;
UPDATE attempts SET log_lines = (SELECT COUNT(*) FROM attempt_logs l WHERE l.attempt_id = attempts.id)
WHERE id IN (SELECT attempt_id FROM attempt_logs);
