//! A consistent read view for exports, and the inventory of what this registry holds.
//!
//! [`Registry::view`] runs a closure inside one read transaction: every tag, manifest and blob
//! row it sees is from the same snapshot, and the files it opens are opened while that snapshot
//! holds. An export opens every file it will stream before writing a byte, so a GC that runs
//! afterwards cannot make it fail halfway (an open file stays readable after its name is gone).

use crate::store::Opened;

use crate::index::Conn;

use super::Registry;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::queries::{self, ManifestRow, RepoId};
use crate::reference::{RepoName, Tag};

/// The registry as of one read transaction.
pub struct View<'a, 'c> {
    registry: &'a Registry,
    conn: &'a Conn<'c>,
}

impl Registry {
    /// Runs `f` on a view of one read transaction (a consistent snapshot of the index).
    pub fn view<T>(&self, f: impl FnOnce(&View) -> Result<T>) -> Result<T> {
        self.index.read_consistent(|tx| {
            f(&View {
                registry: self,
                conn: tx,
            })
        })
    }

    /// Every blob in the index (manifests' own bytes included) with its size, by digest.
    pub fn inventory(&self) -> Result<Vec<(String, u64)>> {
        self.index.read(queries::all_blobs)
    }
}

impl View<'_, '_> {
    fn repo(&self, name: &RepoName) -> Result<RepoId> {
        self.registry.repo(self.conn, name)
    }

    /// Every tag of a repository, in lexical order.
    pub fn tags(&self, name: &RepoName) -> Result<Vec<String>> {
        let repo = self.repo(name)?;
        queries::list_tags(self.conn, repo, None, u32::MAX)
    }

    /// The manifest a tag points at.
    pub fn resolve(&self, name: &RepoName, tag: &Tag) -> Result<ManifestRow> {
        let repo = self.repo(name)?;
        queries::manifest_by_tag(self.conn, repo, tag.as_str())?
            .ok_or_else(|| Error::ManifestUnknown(format!("{name}:{tag}")))
    }

    /// The bytes of a manifest of the repository, or `None` if it has no such manifest.
    pub fn manifest(&self, name: &RepoName, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let repo = self.repo(name)?;
        match queries::manifest_by_digest(self.conn, repo, &digest.to_string())? {
            Some(_) => Ok(Some(self.registry.store.read_blob(digest)?)),
            None => Ok(None),
        }
    }

    /// Opens a blob linked to the repository, with its size; `None` if it is not linked.
    pub fn open(&self, name: &RepoName, digest: &Digest) -> Result<Option<(Opened, u64)>> {
        let repo = self.repo(name)?;
        match queries::linked_blob(self.conn, repo, &digest.to_string())? {
            Some((size, _)) => Ok(Some((self.registry.store.open_blob(digest)?, size))),
            None => Ok(None),
        }
    }
}
