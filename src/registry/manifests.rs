//! Manifests, tags, referrers and the catalog.

use super::Registry;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::index::queries::{self, ManifestRow, NewManifest, RepoId};
use crate::index::Conn;
use crate::manifest::{self, Manifest, RefKind, MAX_INDEX_DEPTH};
use crate::reference::{Reference, RepoName, Tag};

/// A manifest found for a GET or HEAD.
pub struct ManifestHit {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<String>,
    /// The exact bytes that were pushed (GET only).
    pub body: Option<Vec<u8>>,
}

/// What a manifest PUT stored.
pub struct Pushed {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// The tags now pointing at it (the URL's and those of `?tag=`).
    pub tags: Vec<Tag>,
}

/// One page of a listing; `more` when another page follows.
pub struct Listing {
    pub items: Vec<String>,
    pub more: bool,
}

impl Registry {
    /// Looks a manifest up by tag or digest: one indexed read, then the bytes if `with_body`.
    pub fn manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        with_body: bool,
    ) -> Result<ManifestHit> {
        let (repo, row) = self.index.read(|c| {
            let found = match reference {
                Reference::Tag(t) => queries::manifest_by_tag_in(c, name.as_str(), t.as_str())?,
                Reference::Digest(d) => {
                    queries::manifest_by_digest_in(c, name.as_str(), &d.to_string())?
                }
            };
            match found {
                Some(found) => Ok(found),
                // Which is unknown, the repository or the manifest: asked only on a miss.
                None => {
                    self.repo(c, name)?;
                    Err(Error::ManifestUnknown(reference.to_string()))
                }
            }
        })?;
        let now = self.now();
        // Re-checked in the write transaction, as for blobs: GC cannot take it in between.
        if self.due_for_touch(row.accessed_at, now)
            && !self
                .index
                .write(|tx| queries::touch_manifest(tx, repo, &row.digest, now))?
        {
            return Err(Error::ManifestUnknown(reference.to_string()));
        }
        let ManifestRow {
            digest,
            media_type,
            size,
            subject,
            ..
        } = row;
        let body = if with_body {
            let d: Digest = digest
                .parse()
                .map_err(|_| Error::Corrupt(format!("index holds a bad digest {digest:?}")))?;
            Some(self.store.read_blob(&d)?)
        } else {
            None
        };
        Ok(ManifestHit {
            digest,
            media_type,
            size,
            subject,
            body,
        })
    }

    /// Stores a pushed manifest and points the tags at it. Everything it names must already be
    /// in the repository (MANIFEST_BLOB_UNKNOWN otherwise), except a subject, which may come
    /// later. The bytes, the rows and the tags are published in one transaction.
    pub fn put_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Pushed> {
        let parsed = manifest::parse(body, content_type)?;
        let digest = match reference {
            Reference::Digest(want) => {
                let got = Digest::of(want.algorithm(), body);
                if &got != want {
                    return Err(Error::DigestInvalid(format!(
                        "the manifest's content has digest {got}, not {want}"
                    )));
                }
                got
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, body),
        };
        let mut tags: Vec<Tag> = extra_tags.to_vec();
        if let Reference::Tag(t) = reference {
            tags.insert(0, t.clone());
        }
        tags.dedup();
        let staged = self.store.stage_bytes(body)?;
        self.store.send(&staged, &digest)?;
        let key = digest.to_string();
        let now = self.now();
        self.index.write(|tx| {
            let repo = queries::ensure_local_repo(tx, name.as_str(), now)?;
            check_references(tx, repo, &parsed)?;
            check_depth(tx, repo, &parsed)?;
            queries::insert_blob(tx, &key, body.len() as u64, now)?;
            self.store.commit(staged, &digest)?;
            queries::link_blob(tx, repo, &key, now)?;
            insert_parsed(tx, repo, &key, body.len() as u64, &parsed, now)?;
            for t in &tags {
                queries::set_tag(tx, repo, t.as_str(), &key, now)?;
            }
            Ok(())
        })?;
        Ok(Pushed {
            digest,
            subject: parsed.subject.map(|s| s.digest),
            tags,
        })
    }

    /// DELETE by digest removes the manifest and every tag on it; by tag, just the tag.
    pub fn delete_manifest(&self, name: &RepoName, reference: &Reference) -> Result<()> {
        self.index.write(|tx| {
            let repo = self.repo(tx, name)?;
            let found = match reference {
                Reference::Tag(t) => queries::delete_tag(tx, repo, t.as_str())?,
                Reference::Digest(d) => {
                    let key = d.to_string();
                    if let Some(parent) = queries::manifest_needing(tx, repo, &key)? {
                        return Err(super::blobs::in_use(name, d, &parent));
                    }
                    queries::delete_manifest(tx, repo, &key)?
                }
            };
            if found {
                Ok(())
            } else {
                Err(Error::ManifestUnknown(reference.to_string()))
            }
        })
    }

    /// Tags in lexical order, `n` at a time after `last`. `n = None` lists them all.
    pub fn tags(&self, name: &RepoName, n: Option<u32>, last: Option<&str>) -> Result<Listing> {
        self.index.read(|c| {
            let repo = self.repo(c, name)?;
            page(n, |limit| queries::list_tags(c, repo, last, limit))
        })
    }

    /// Repositories that hold at least one manifest, in lexical order.
    pub fn catalog(&self, n: Option<u32>, last: Option<&str>) -> Result<Listing> {
        self.index
            .read(|c| page(n, |limit| queries::catalog(c, last, limit)))
    }

    /// The manifests of a repository whose subject is `subject`, optionally of one artifact
    /// type. An unknown repository or subject has no referrers (never 404).
    pub fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<queries::ReferrerRow>> {
        self.index.read(|c| {
            let Some(repo) = queries::repo_id(c, name.as_str())? else {
                return Ok(Vec::new());
            };
            queries::referrers(c, repo, &subject.to_string(), artifact_type, None)
        })
    }
}

/// Inserts a parsed manifest's row and the references it makes; false when `repo` had it.
pub(super) fn insert_parsed(
    c: &Conn,
    repo: RepoId,
    key: &str,
    size: u64,
    parsed: &Manifest,
    now: i64,
) -> Result<bool> {
    let subject = parsed.subject.as_ref().map(|s| s.digest.to_string());
    let row = NewManifest {
        digest: key,
        media_type: &parsed.media_type,
        size,
        artifact_type: parsed.artifact_type.as_deref(),
        subject: subject.as_deref(),
        annotations: parsed.annotations.as_deref(),
    };
    queries::insert_manifest(c, repo, &row, &parsed.refs(), now)
}

/// Every blob and child manifest a manifest requires must be in the repository, with the size
/// its descriptor claims (a wrong size would only fail later, on every pull).
pub(super) fn check_references(c: &Conn, repo: RepoId, m: &Manifest) -> Result<()> {
    for r in m.refs().into_iter().filter(|r| r.required) {
        let key = r.digest.to_string();
        let actual = match r.kind {
            RefKind::Child => queries::manifest_by_digest(c, repo, &key)?.map(|row| row.size),
            _ => queries::linked_blob(c, repo, &key)?.map(|(size, _)| size),
        };
        match actual {
            None => return Err(Error::ManifestBlobUnknown(r.digest)),
            Some(size) if size != r.size => {
                return Err(Error::ManifestInvalid(format!(
                    "the {} descriptor of {} says {} bytes, but it has {size}",
                    r.kind.as_str(),
                    r.digest,
                    r.size
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An index may have at most [`MAX_INDEX_DEPTH`] levels of manifests below it: one more than
/// its deepest child, whose own levels the stored references tell (every child is stored: see
/// [`check_references`]).
fn check_depth(c: &Conn, repo: RepoId, m: &Manifest) -> Result<()> {
    if m.manifests.is_empty() {
        return Ok(());
    }
    let children: Vec<String> = m.manifests.iter().map(|d| d.digest.to_string()).collect();
    let depth = 1 + queries::depth_below(c, repo, &children, MAX_INDEX_DEPTH)?;
    if depth <= MAX_INDEX_DEPTH {
        return Ok(());
    }
    Err(Error::ManifestInvalid(format!(
        "indexes nested deeper than {MAX_INDEX_DEPTH} levels: this index has at least {depth} \
         levels of manifests below it, more than atoll can export"
    )))
}

/// Runs a listing query for one page: fetches one extra row to know whether more follow.
fn page(n: Option<u32>, query: impl FnOnce(u32) -> Result<Vec<String>>) -> Result<Listing> {
    match n {
        Some(0) => Ok(Listing {
            items: Vec::new(),
            more: false,
        }),
        Some(n) => {
            let mut items = query(n.saturating_add(1))?;
            let more = items.len() > n as usize;
            items.truncate(n as usize);
            Ok(Listing { items, more })
        }
        None => Ok(Listing {
            items: query(u32::MAX)?,
            more: false,
        }),
    }
}
