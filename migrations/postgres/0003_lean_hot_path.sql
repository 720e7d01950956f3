-- Leaner hot path: every index on attempts and tasks costs each claim and
-- each completion. Starts per minute are now counted in `quota_starts`,
-- written only for tenants and queues that have a starts quota; live
-- concurrency is counted from the active attempts (a partial index).

DROP INDEX attempts_active_node;
DROP INDEX attempts_tenant_started;
DROP INDEX attempts_queue_started;

-- Queue depth only counts unfinished tasks.
DROP INDEX tasks_queue_state;
CREATE INDEX tasks_queue_active ON tasks (queue, state) WHERE state IN ('pending', 'ready', 'leased');

-- One row per lease start of a tenant or queue with a starts-per-minute
-- quota; the sweep deletes rows older than two minutes.
CREATE TABLE quota_starts (
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
CREATE INDEX quota_starts_window ON quota_starts (scope, name, started_at);
