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
-- Blobs a node is fetching from an upstream for the pull-through cache, so that the other
-- nodes wait for that one fetch instead of starting theirs. A node renews its lease while it
-- fetches; one that died lets it lapse at `until` (Unix seconds), and another takes over.
CREATE TABLE fill_leases (
    digest      TEXT    PRIMARY KEY,
    node        TEXT    NOT NULL,
    until       INTEGER NOT NULL
) WITHOUT ROWID;
