-- What several nodes on one index share (they are used only when the index is in PostgreSQL,
-- but both engines keep one schema). job_runs: when a periodic job (collection, eviction) last
-- started anywhere, so it runs once an interval per cluster, not once per node. secrets: keys
-- every node must agree on, such as the one tokens are signed with.
CREATE TABLE job_runs (
    name        TEXT    PRIMARY KEY,
    last_run    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL
) WITHOUT ROWID;
