-- Jobs held by a quota, and retention of finished jobs (SPEC §2, §7).
--
-- `exhausted` marks a quota that had no room left when a claim (or the
-- sweep, or a change of its limits) last looked. Jobs whose ready tasks wait
-- on such a quota are `blocked`; they are re-derived when the mark clears.
-- The mark changes only on those transitions, so a saturated quota costs
-- nothing per claim beyond the usage counts the claim takes anyway.
ALTER TABLE quotas ADD COLUMN exhausted BOOLEAN NOT NULL DEFAULT false;

-- Retention deletes finished jobs oldest first; unfinished jobs have no
-- finished_at and are never in this index. It keeps the jobs that still
-- have an open dead-letter entry, found through the second index.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX dead_letters_job ON dead_letters (job_id, status);
