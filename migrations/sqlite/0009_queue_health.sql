-- Queue health with a large backlog (measured by server/benches/console.rs:
-- 50,000 ready tasks and 50,000 jobs failed in the last hour took 143 ms on
-- SQLite): both of its counts read an index alone instead of visiting a row
-- per counted task or job.
--
-- Active tasks per queue and state, the oldest ready one, for the caller's
-- tenants.
DROP INDEX tasks_queue_active;
CREATE INDEX tasks_queue_active ON tasks (queue, state, created_at, tenant)
    WHERE state IN ('pending', 'ready', 'leased');

-- Jobs failed since a time, per queue, for the caller's tenants (and the
-- jobs list filtered to failed jobs finished since a time).
DROP INDEX jobs_failed_finished;
CREATE INDEX jobs_failed_finished ON jobs (finished_at, queue, tenant) WHERE state = 'failed';
