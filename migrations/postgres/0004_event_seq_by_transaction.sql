-- The event seq is now assigned at insert as (transaction id << 20) + the
-- event's position in its transaction, and readers stay below the oldest
-- running transaction (see kernel/src/engine/events.rs). No row is updated
-- after insert any more, so the private id, its index and the index of
-- unnumbered rows go.
UPDATE events SET seq = (SELECT COALESCE(MAX(seq), 0) FROM events) + id WHERE seq IS NULL;
DROP INDEX events_unsequenced;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events DROP COLUMN id;
ALTER TABLE events ALTER COLUMN seq SET NOT NULL;
