-- Garbage collection asks "is any manifest this blob?" for every candidate blob.
CREATE INDEX manifests_by_digest ON manifests(digest);
