-- Doomed files are recorded a sweep transaction at a time: a row holds, as a JSON array, the
-- digests whose blob rows that transaction deleted; the next transaction unlinks their files,
-- except those whose digest has a row again (a push published the same blob since: the file is
-- that blob's). A row per digest, as 0003 had, cost two more index writes per deleted blob,
-- and every published blob a delete from the table.
CREATE TABLE doomed_batches (
    id          INTEGER PRIMARY KEY,
    digests     TEXT    NOT NULL
);
INSERT INTO doomed_batches (digests)
    SELECT json_group_array(digest) FROM doomed_files HAVING count(*) > 0;
DROP TABLE doomed_files;
