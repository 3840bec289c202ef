-- What the registry holds, counted as rows come and go, so that /metrics and the web page's
-- summary read one row instead of counting every row per request, whose cost grew with the
-- registry. One row; every insert and delete of a repository, manifest, tag or blob moves it,
-- cascaded deletes included, in the same transaction.
CREATE TABLE holdings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    repos       INTEGER NOT NULL,
    manifests   INTEGER NOT NULL,
    tags        INTEGER NOT NULL,
    blobs       INTEGER NOT NULL,
    blob_bytes  INTEGER NOT NULL
);
INSERT INTO holdings
SELECT 1, (SELECT COUNT(*) FROM repos), (SELECT COUNT(*) FROM manifests),
       (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM blobs),
       (SELECT COALESCE(SUM(size), 0) FROM blobs);

CREATE TRIGGER holdings_repo_in AFTER INSERT ON repos
BEGIN UPDATE holdings SET repos = repos + 1; END;
CREATE TRIGGER holdings_repo_out AFTER DELETE ON repos
BEGIN UPDATE holdings SET repos = repos - 1; END;
CREATE TRIGGER holdings_manifest_in AFTER INSERT ON manifests
BEGIN UPDATE holdings SET manifests = manifests + 1; END;
CREATE TRIGGER holdings_manifest_out AFTER DELETE ON manifests
BEGIN UPDATE holdings SET manifests = manifests - 1; END;
CREATE TRIGGER holdings_tag_in AFTER INSERT ON tags
BEGIN UPDATE holdings SET tags = tags + 1; END;
CREATE TRIGGER holdings_tag_out AFTER DELETE ON tags
BEGIN UPDATE holdings SET tags = tags - 1; END;
CREATE TRIGGER holdings_blob_in AFTER INSERT ON blobs
BEGIN UPDATE holdings SET blobs = blobs + 1, blob_bytes = blob_bytes + NEW.size; END;
CREATE TRIGGER holdings_blob_out AFTER DELETE ON blobs
BEGIN UPDATE holdings SET blobs = blobs - 1, blob_bytes = blob_bytes - OLD.size; END;

-- The cached repositories, for what the cache holds (its bytes, its upstreams): reached from
-- here, that costs what the cache holds, not what the registry holds.
CREATE INDEX repos_cached ON repos(upstream) WHERE upstream IS NOT NULL;
