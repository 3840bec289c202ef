-- An upload into the object store keeps its state in its row (the multipart upload's id, the
-- parts sent, the tail's object, the running hash: store/multipart.rs), so a restart, or another
-- node, resumes it. NULL for an upload to the disk, whose file is its state.
ALTER TABLE uploads ADD COLUMN state TEXT;
