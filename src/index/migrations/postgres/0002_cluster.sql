-- As ../0006_cluster.sql: when each periodic job last started anywhere in the cluster, and the
-- keys every node must agree on.
CREATE TABLE job_runs (
    name        TEXT    PRIMARY KEY,
    last_run    BIGINT  NOT NULL
);
CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL
);
