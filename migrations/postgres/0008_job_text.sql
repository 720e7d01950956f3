-- The jobs list's free text (issue #6): one search document per job — its
-- name and every task's payload — with a trigram index (pg_trgm, a trusted
-- extension: the database owner may create it), so `ILIKE '%text%'` reads
-- the index instead of every job's tasks. Kept by the kernel: written at
-- submit, rewritten when a replay edits a payload, deleted with the job.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE job_text (
    job_id BIGINT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE INDEX job_text_trgm ON job_text USING gin (body gin_trgm_ops);

INSERT INTO job_text (job_id, body)
SELECT j.id,
       j.name || chr(10) || COALESCE((SELECT string_agg(t.payload, chr(10)) FROM tasks t WHERE t.job_id = j.id), '')
FROM jobs j;
