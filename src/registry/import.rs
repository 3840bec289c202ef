//! Registering what an import brought, all at once: the staged blobs are published and every
//! repository, blob link, manifest and tag is recorded in ONE index transaction, after every
//! check has passed. A failure anywhere before the commit registers nothing, and the staged
//! files not yet published are deleted when their guards drop.
//!
//! This follows `put_manifest`'s protocol (a staged file is renamed into `blobs/` inside the
//! transaction that records it), so a concurrent GC, which unlinks files only inside its own
//! transactions, can never see a published blob without its rows, nor delete a local blob this
//! import relies on between the check and the commit. The caller (bundle/) has verified every
//! staged file's digest and size; this module checks what only the index can tell.

use std::collections::HashSet;

use super::manifests::{check_references, insert_parsed};
use super::Registry;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::{queries, Conn};
use crate::manifest::Manifest;
use crate::reference::{RepoName, Tag};
use crate::store::Staged;

/// Where the bytes of a blob come from.
pub enum Source {
    /// Copied from the bundle and verified: published unless the registry already has it.
    Staged(Staged),
    /// Not in the bundle (a delta bundle, or a blob seen to be here already): the registry must
    /// hold it, with this size, when the transaction runs.
    Local,
}

/// One blob an import needs (layers, configs and the manifests' own bytes).
pub struct NewBlob {
    pub digest: Digest,
    pub size: u64,
    pub source: Source,
}

/// A manifest to register, parsed.
pub struct NewImageManifest {
    pub digest: Digest,
    pub size: u64,
    pub parsed: Manifest,
}

/// One name an import gives: the repository, the tag (none: by digest only), the root manifest,
/// and everything the root needs, manifests listed children first.
pub struct ImageRef {
    pub repo: RepoName,
    pub tag: Option<Tag>,
    pub root: Digest,
    pub manifests: Vec<Digest>,
    pub blobs: Vec<Digest>,
}

/// Everything an import registers.
#[derive(Default)]
pub struct Batch {
    pub blobs: Vec<NewBlob>,
    pub manifests: Vec<NewImageManifest>,
    pub images: Vec<ImageRef>,
}

/// What changed, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registered {
    pub blobs_new: u64,
    pub blobs_present: u64,
    pub bytes_new: u64,
    pub bytes_present: u64,
    pub manifests_new: u64,
    pub links_new: u64,
    /// Per name: `repo:tag` (or `repo@digest`), the root digest, and what happened to it.
    pub names: Vec<(String, String, Change)>,
}

/// What an import did to one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    /// The tag pointed at another manifest before.
    Moved,
    Unchanged,
}

impl Registered {
    /// True when the import found everything already in place.
    pub fn nothing_new(&self) -> bool {
        self.blobs_new == 0
            && self.manifests_new == 0
            && self.links_new == 0
            && self.names.iter().all(|(_, _, c)| *c == Change::Unchanged)
    }
}

impl Registry {
    /// The size of a blob the registry holds (an index row and its file), if it does.
    pub fn holds(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = digest.to_string();
        let row = self.index.read(|c| queries::blob_size(c, &key))?;
        match row {
            Some(size) if self.store.stat(digest)? == Some(size) => Ok(Some(size)),
            _ => Ok(None),
        }
    }

    /// Registers a batch in one transaction. Blobs the batch expects to find here and that are
    /// not (or not with the right size) fail it, naming every one of them.
    pub fn register(&self, batch: Batch) -> Result<Registered> {
        let now = self.now();
        let Batch {
            blobs,
            manifests,
            images,
        } = batch;
        for b in &blobs {
            if let Source::Staged(staged) = &b.source {
                self.store.send(staged, &b.digest)?;
            }
        }
        self.index.write(move |tx| {
            let mut out = Registered::default();
            // Every check that can fail comes before the first rename into blobs/.
            let mut to_publish = Vec::new();
            let mut missing = Vec::new();
            for b in blobs {
                let key = b.digest.to_string();
                let here = match queries::blob_size(tx, &key)? {
                    Some(size) => self.store.stat(&b.digest)?.filter(|s| *s == size),
                    None => None,
                };
                match (b.source, here) {
                    (_, Some(size)) if size == b.size => {
                        out.blobs_present += 1;
                        out.bytes_present += size;
                    }
                    (Source::Staged(staged), _) => to_publish.push((b.digest, b.size, staged)),
                    (Source::Local, Some(size)) => missing.push(format!(
                        "{} (this registry has {size} bytes, the bundle's manifest says {})",
                        b.digest, b.size
                    )),
                    (Source::Local, None) => missing.push(b.digest.to_string()),
                }
            }
            if !missing.is_empty() {
                return Err(Error::Bundle(format!(
                    "{} blob(s) are neither in the bundle nor in this registry: {}",
                    missing.len(),
                    missing.join(", ")
                )));
            }
            for (digest, size, staged) in to_publish {
                queries::insert_blob(tx, &digest.to_string(), size, now)?;
                self.store.commit(staged, &digest)?;
                out.blobs_new += 1;
                out.bytes_new += size;
            }
            for image in &images {
                self.register_image(tx, image, &manifests, now, &mut out)?;
            }
            Ok(out)
        })
    }

    /// Links an image's blobs to its repository, inserts its manifests children first, and
    /// points its tag at the root.
    fn register_image(
        &self,
        tx: &Conn,
        image: &ImageRef,
        manifests: &[NewImageManifest],
        now: i64,
        out: &mut Registered,
    ) -> Result<()> {
        let repo = queries::ensure_local_repo(tx, image.repo.as_str(), now)?;
        let root = image.root.to_string();
        let existed = queries::manifest_by_digest(tx, repo, &root)?.is_some();
        let mut linked = HashSet::new();
        for d in image.blobs.iter().chain(&image.manifests) {
            let key = d.to_string();
            if linked.insert(key.clone()) && queries::linked_blob(tx, repo, &key)?.is_none() {
                queries::link_blob(tx, repo, &key, now)?;
                out.links_new += 1;
            }
        }
        for d in &image.manifests {
            let m = manifests.iter().find(|m| &m.digest == d).ok_or_else(|| {
                Error::Corrupt(format!("import batch lists {d} but does not carry it"))
            })?;
            check_references(tx, repo, &m.parsed)?;
            let key = d.to_string();
            if insert_parsed(tx, repo, &key, m.size, &m.parsed, now)? {
                out.manifests_new += 1;
            }
        }
        let (name, change) = match &image.tag {
            Some(tag) => {
                let before = queries::manifest_by_tag(tx, repo, tag.as_str())?.map(|r| r.digest);
                queries::set_tag(tx, repo, tag.as_str(), &root, now)?;
                let change = match before {
                    None => Change::New,
                    Some(d) if d == root => Change::Unchanged,
                    Some(_) => Change::Moved,
                };
                (format!("{}:{}", image.repo, tag), change)
            }
            None if existed => (format!("{}@{root}", image.repo), Change::Unchanged),
            None => (format!("{}@{root}", image.repo), Change::New),
        };
        out.names.push((name, root, change));
        Ok(())
    }
}
