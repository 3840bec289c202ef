-- What the registry holds, counted as rows come and go (see ../0007_holdings.sql for why). Every
-- writer holds the cluster's write lock, so the one row is never a point of contention.
CREATE TABLE holdings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    repos       BIGINT  NOT NULL,
    manifests   BIGINT  NOT NULL,
    tags        BIGINT  NOT NULL,
    blobs       BIGINT  NOT NULL,
    blob_bytes  BIGINT  NOT NULL
);
INSERT INTO holdings
SELECT 1, (SELECT COUNT(*) FROM repos), (SELECT COUNT(*) FROM manifests),
       (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM blobs),
       (SELECT COALESCE(SUM(size), 0) FROM blobs);

CREATE FUNCTION holdings_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d BIGINT := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    CASE TG_TABLE_NAME
        WHEN 'repos' THEN UPDATE holdings SET repos = repos + d;
        WHEN 'manifests' THEN UPDATE holdings SET manifests = manifests + d;
        WHEN 'tags' THEN UPDATE holdings SET tags = tags + d;
        WHEN 'blobs' THEN
            IF TG_OP = 'INSERT' THEN
                UPDATE holdings SET blobs = blobs + 1, blob_bytes = blob_bytes + NEW.size;
            ELSE
                UPDATE holdings SET blobs = blobs - 1, blob_bytes = blob_bytes - OLD.size;
            END IF;
    END CASE;
    RETURN NULL;
END $$;
CREATE TRIGGER holdings_repos AFTER INSERT OR DELETE ON repos
    FOR EACH ROW EXECUTE FUNCTION holdings_count();
CREATE TRIGGER holdings_manifests AFTER INSERT OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION holdings_count();
CREATE TRIGGER holdings_tags AFTER INSERT OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION holdings_count();
CREATE TRIGGER holdings_blobs AFTER INSERT OR DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION holdings_count();

CREATE INDEX repos_cached ON repos(upstream) WHERE upstream IS NOT NULL;
