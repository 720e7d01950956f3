-- The jobs list's free text (issue #6): one search document per job — its
-- name and every task's payload — in an FTS5 table with the trigram
-- tokenizer, so `LIKE '%text%'` reads the index instead of every job's
-- tasks. The rowid is the job id. Kept by the kernel: written at submit,
-- rewritten when a replay edits a payload, deleted with the job.
-- detail=none: substring (LIKE) queries need no positions; the index is
-- about a third of the size.
CREATE VIRTUAL TABLE job_text USING fts5(body, tokenize = 'trigram', detail = 'none');

INSERT INTO job_text (rowid, body)
SELECT j.id,
       j.name || char(10) || COALESCE((SELECT group_concat(t.payload, char(10)) FROM tasks t WHERE t.job_id = j.id), '')
FROM jobs j;
