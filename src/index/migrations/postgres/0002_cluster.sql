-- As ../0006_cluster.sql: when each periodic job last started anywhere in the cluster, the keys
-- every node must agree on, and the upstream fetches under way.
CREATE TABLE job_runs (
    name        TEXT    PRIMARY KEY,
    last_run    BIGINT  NOT NULL
);
CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL
);
CREATE TABLE fill_leases (
    digest      TEXT    COLLATE "C" PRIMARY KEY,
    node        TEXT    NOT NULL,
    until       BIGINT  NOT NULL
);
