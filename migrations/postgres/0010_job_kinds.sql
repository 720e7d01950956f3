-- The jobs list's kind filter (issue #6): the task kinds of each job,
-- written once at submit (kinds never change) and deleted with the job. A
-- page filtered to a rare kind reads this index in job id order instead of
-- checking every job's tasks on the way (measured by
-- server/benches/console.rs: a kind in one job of 1,000 took 39 ms p50 on
-- SQLite over 1,000,000 jobs). Never updated, so the task transitions of
-- the hot path do not touch it.
CREATE TABLE job_kinds (
    kind TEXT NOT NULL,
    job_id BIGINT NOT NULL,
    PRIMARY KEY (kind, job_id)
);

INSERT INTO job_kinds (kind, job_id) SELECT DISTINCT kind, job_id FROM tasks;
