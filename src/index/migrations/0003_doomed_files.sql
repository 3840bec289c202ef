-- Blob files whose rows garbage collection has deleted, to be unlinked by its next transaction
-- (or, after a crash, by the next collection or start). A digest here has no row in blobs: a
-- push that publishes the same digest takes it out of this table in its own transaction, so
-- its file stays.
CREATE TABLE doomed_files (
    digest      TEXT    PRIMARY KEY
) WITHOUT ROWID;
