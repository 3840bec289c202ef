//! Blobs as a repository sees them: read (only if linked), unlink, mount from elsewhere.

use crate::store::Opened;

use super::Registry;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::queries;
use crate::reference::RepoName;

/// How long a redirected client may use its presigned URL: enough to start a download over a
/// slow link, too short to pass around.
const REDIRECT_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// A blob a repository may read.
pub struct BlobHit {
    pub size: u64,
    /// Open for reading, when the caller asked for the bytes (GET, not HEAD).
    pub file: Option<Opened>,
}

/// What a mount request came to.
#[derive(Debug, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob is now linked to the target repository (201).
    Mounted,
    /// The source does not have it: the client must upload (202 with a fresh session).
    NotAvailable,
}

impl Registry {
    /// Looks up a blob in a repository; opens it if `open`. Invariant 3: a blob that is not
    /// linked to the repository is unknown here, whoever else holds it.
    pub fn blob(&self, name: &RepoName, digest: &Digest, open: bool) -> Result<BlobHit> {
        let key = digest.to_string();
        let unknown = || Error::BlobUnknown(digest.clone());
        let (repo, size, accessed_at) = self
            .index
            .read(|c| queries::linked_blob_in(c, name.as_str(), &key))?
            .ok_or_else(unknown)?;
        let now = self.now();
        // The refresh re-checks the link in the same write transaction, so GC (which deletes in
        // write transactions too) cannot take the blob between this answer and the client's
        // manifest push; a link read more recently than the touch interval is safe anyway.
        if self.due_for_touch(accessed_at, now)
            && !self
                .index
                .write(|tx| queries::touch_blob(tx, repo, &key, now))?
        {
            return Err(unknown());
        }
        let file = if open {
            Some(self.store.open_blob(digest)?)
        } else {
            None
        };
        Ok(BlobHit { size, file })
    }

    /// A short-lived URL the blob can be fetched from directly, if its engine has them (an
    /// object store). The caller has checked the link with [`Self::blob`].
    pub fn blob_url(&self, digest: &Digest) -> Option<http_types::Url> {
        self.store.presign(digest, REDIRECT_FOR)
    }

    /// Removes a blob from a repository. The file stays until GC finds nothing else needs it.
    pub fn delete_blob(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        let key = digest.to_string();
        self.index.write(|tx| {
            let repo = queries::repo_id(tx, name.as_str())?
                .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
            if let Some(manifest) = queries::manifest_needing(tx, repo, &key)? {
                return Err(in_use(name, digest, &manifest));
            }
            if queries::unlink_blob(tx, repo, &key)? {
                Ok(())
            } else {
                Err(Error::BlobUnknown(digest.clone()))
            }
        })
    }

    /// Links a blob into `to` from `from`, or, with no `from`, from anywhere in the registry
    /// (the caller has already been allowed to push to `to`, and every identity that may push
    /// may read every repository, so this grants nothing new).
    pub fn mount_blob(
        &self,
        to: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<MountOutcome> {
        let key = digest.to_string();
        let now = self.now();
        self.index.write(|tx| {
            let available = match from {
                Some(src) => match queries::repo_id(tx, src.as_str())? {
                    Some(r) => queries::linked_blob(tx, r, &key)?.is_some(),
                    None => false,
                },
                None => queries::blob_size(tx, &key)?.is_some(),
            };
            if !available || self.store.stat(digest)?.is_none() {
                return Ok(MountOutcome::NotAvailable);
            }
            let repo = queries::ensure_local_repo(tx, to.as_str(), now)?;
            queries::link_blob(tx, repo, &key, now)?;
            Ok(MountOutcome::Mounted)
        })
    }
}

/// Refuses a delete that would leave `manifest` of `name` unable to be pulled: the repository's
/// rule is that it reads what its manifests name, so what they name goes only after them.
pub(super) fn in_use(name: &RepoName, digest: &Digest, manifest: &str) -> Error {
    Error::InUse(format!(
        "{digest} is named by manifest {manifest} of {name}: delete that manifest first"
    ))
}
