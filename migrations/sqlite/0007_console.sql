-- The JobEngine console (issue #6) with 1,000,000 jobs:
--
-- A created-time range on the jobs list reads this index and sorts the
-- range, instead of walking the id index past every job outside it.
CREATE INDEX jobs_created ON jobs (created_at);

-- Queue health's "jobs failed in the last hour" (and the jobs list filtered
-- to failed jobs finished since a time) read only failed jobs by finish
-- time. Partial: other jobs never enter it.
CREATE INDEX jobs_failed_finished ON jobs (finished_at) WHERE state = 'failed';
