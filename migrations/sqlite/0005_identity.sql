-- Identity and access (SPEC §6): console users with Argon2id password
-- hashes, database-backed sessions (they survive a restart and can be
-- revoked), and bearer tokens (API tokens and per-node tokens), stored as
-- SHA-256 hashes of their secrets. Scopes and tenant grants are JSON arrays
-- of strings; the tenant grant ["*"] means every tenant.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    tenants       TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,   -- boolean
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    -- SHA-256 of the cookie value: a database read does not yield sessions.
    secret_hash   TEXT NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    csrf_token    TEXT NOT NULL,
    client_addr   TEXT,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    -- Absolute expiry; the idle limit is applied against last_seen_at.
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('api', 'node')),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    tenants      TEXT NOT NULL,
    node_id      INTEGER REFERENCES nodes (id),
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
