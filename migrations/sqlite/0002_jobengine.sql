-- The JobEngine (SPEC §2): tenants, queues, quotas, jobs, tasks and their
-- dependency edges, attempts (each active attempt is a lease: token + fencing
-- epoch + expiry), worker nodes, dead-letter entries, attempt logs and the
-- append-only event log. Every timestamp is unix milliseconds (INTEGER).
-- JSON values are stored as TEXT. The Postgres migration has the same shape.

CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);

CREATE TABLE queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,   -- boolean
    paused_at  INTEGER,
    created_at INTEGER NOT NULL
);

-- Limits enforced at claim time; NULL = unlimited.
CREATE TABLE quotas (
    scope                 TEXT NOT NULL CHECK (scope IN ('tenant', 'queue')),
    name                  TEXT NOT NULL,
    max_concurrent        INTEGER,
    max_starts_per_minute INTEGER,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    queue           TEXT NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL
);
-- Idempotent submit: one job per (tenant, key).
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Keyset pagination is newest first by id; one index per list filter.
CREATE INDEX jobs_state  ON jobs (state, id);
CREATE INDEX jobs_queue  ON jobs (queue, id);
CREATE INDEX jobs_tenant ON jobs (tenant, id);

CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY,
    job_id         INTEGER NOT NULL REFERENCES jobs (id),
    key            TEXT NOT NULL,
    kind           TEXT NOT NULL,
    -- Copied from the job so the claim path reads one table.
    tenant         TEXT NOT NULL,
    queue          TEXT NOT NULL,
    priority       INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL,
    -- Dependencies not yet succeeded; the task becomes ready at 0.
    deps_remaining INTEGER NOT NULL,
    max_attempts   INTEGER NOT NULL,
    attempts_used  INTEGER NOT NULL DEFAULT 0,
    -- Fencing epoch: +1 on every lease.
    epoch          INTEGER NOT NULL DEFAULT 0,
    timeout_s      INTEGER,
    -- Retry backoff: not leased before this time.
    not_before     INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    output         TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    UNIQUE (job_id, key)
);
-- The claim path: ready tasks in priority, then age, order.
CREATE INDEX tasks_claim ON tasks (priority DESC, id) WHERE state = 'ready';
-- Queue depth figures.
CREATE INDEX tasks_queue_state ON tasks (queue, state);

-- Edge task_id → depends_on (both tasks of the same job).
CREATE TABLE task_deps (
    task_id    INTEGER NOT NULL,
    depends_on INTEGER NOT NULL,
    PRIMARY KEY (task_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX task_deps_upstream ON task_deps (depends_on);

CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    task_id          INTEGER NOT NULL,
    job_id           INTEGER NOT NULL,
    tenant           TEXT NOT NULL,
    queue            TEXT NOT NULL,
    number           INTEGER NOT NULL,
    state            TEXT NOT NULL,
    node_id          INTEGER,
    lease_token      TEXT NOT NULL,
    epoch            INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    heartbeat_at     INTEGER,
    finished_at      INTEGER,
    error            TEXT
);
CREATE INDEX attempts_task ON attempts (task_id, number);
-- The expiry sweep and the per-node / per-quota live counts read only active rows.
CREATE INDEX attempts_active_expiry ON attempts (lease_expires_at) WHERE state = 'active';
CREATE INDEX attempts_active_node ON attempts (node_id) WHERE state = 'active';
-- Starts per minute (quotas).
CREATE INDEX attempts_tenant_started ON attempts (tenant, started_at);
CREATE INDEX attempts_queue_started ON attempts (queue, started_at);

CREATE TABLE nodes (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    kinds             TEXT NOT NULL DEFAULT '[]',
    capacity          INTEGER NOT NULL,
    labels            TEXT NOT NULL DEFAULT '{}',
    file_scopes       TEXT NOT NULL DEFAULT '[]',
    status            TEXT NOT NULL,
    registered_at     INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    task_id     INTEGER NOT NULL,
    job_name    TEXT NOT NULL,
    task_key    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    queue       TEXT NOT NULL,
    error       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    payload     TEXT NOT NULL,
    attempts    TEXT NOT NULL,   -- JSON array of the attempts of the spent budget
    status      TEXT NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX dead_letters_status ON dead_letters (status, id);
CREATE INDEX dead_letters_fingerprint ON dead_letters (fingerprint, id);
CREATE INDEX dead_letters_queue ON dead_letters (queue, id);
CREATE INDEX dead_letters_task ON dead_letters (task_id);

CREATE TABLE attempt_logs (
    id         INTEGER PRIMARY KEY,
    attempt_id INTEGER NOT NULL,
    stream     TEXT NOT NULL,
    line       TEXT NOT NULL,
    ts         INTEGER NOT NULL
);
CREATE INDEX attempt_logs_attempt ON attempt_logs (attempt_id, id);

-- The event log. With one writer connection, commit order is insertion
-- order, so the AUTOINCREMENT key is the public, gapless `seq`.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         INTEGER NOT NULL,
    type       TEXT NOT NULL,
    tenant     TEXT,
    job_id     INTEGER,
    task_id    INTEGER,
    attempt_id INTEGER,
    node_id    INTEGER,
    dead_letter_id INTEGER,
    queue      TEXT,
    data       TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id, seq) WHERE job_id IS NOT NULL;
