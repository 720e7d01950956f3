-- What a job submitted with an idempotency key asked for (a digest of the
-- job as parsed), so that the key reused for a different job is refused
-- instead of answered with the first job. NULL for jobs without a key and
-- for jobs submitted before this column: those keys match any job.
ALTER TABLE jobs ADD COLUMN idempotency_fingerprint TEXT;
