-- Postgres changed how it numbers events (0004 there); on SQLite the one
-- writer already makes the rowid a commit-ordered seq. Nothing to do; this
-- file keeps the two migration histories aligned.
SELECT 1;
