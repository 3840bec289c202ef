-- The index: the only authority on names. Blob bytes live on disk under blobs/, named by digest;
-- every row here that names a blob points at a file that exists.
-- Times are Unix seconds. Digests are 'algorithm:hex' text.

-- Repositories. upstream is NULL for repositories pushed here, else the upstream host a cached
-- repository mirrors (the pull-through cache).
CREATE TABLE repos (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    upstream    TEXT
);

-- Every blob file under blobs/, manifests' own bytes included.
CREATE TABLE blobs (
    digest      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Which blobs each repository may read (pushed, mounted, or named by one of its manifests).
-- linked_at protects fresh links from GC; accessed_at is refreshed by reads (GC grace, cache TTL).
CREATE TABLE repo_blobs (
    repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    digest      TEXT    NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
    linked_at   INTEGER NOT NULL,
    accessed_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX repo_blobs_by_digest ON repo_blobs(digest);

-- Manifests, per repository. The bytes are the blob named by digest.
-- artifact_type and annotations are kept for the referrers API; subject for finding referrers.
CREATE TABLE manifests (
    repo_id       INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs(digest),
    media_type    TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL,
    accessed_at   INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_by_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;

-- Tags point at manifests of the same repository.
CREATE TABLE tags (
    repo_id     INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags(repo_id, digest);

-- What each manifest names: kind is 'config', 'layer', 'child' (a manifest in an index) or
-- 'subject'. GC marks by walking these edges.
CREATE TABLE manifest_refs (
    repo_id     INTEGER NOT NULL,
    manifest    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    platform    TEXT,
    PRIMARY KEY (repo_id, manifest, kind, digest),
    FOREIGN KEY (repo_id, manifest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX manifest_refs_by_digest ON manifest_refs(digest);

-- Upload sessions in progress; their bytes are uploads/<id>.
CREATE TABLE uploads (
    id          TEXT    PRIMARY KEY,
    repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
