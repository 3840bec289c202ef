//! Upload sessions as the API sees them: start, find, finish (verify and publish), cancel,
//! and purge the stale ones.

use std::collections::HashSet;

use super::Registry;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::ids;
use crate::index::queries;
use crate::reference::RepoName;
use crate::store::{entries_if_any, remove_if_exists};
use crate::upload::{Session, Shared};

impl Registry {
    /// Starts a resumable upload session (POST without `?digest=`).
    pub fn start_upload(&self, name: &RepoName) -> Result<Shared> {
        let id = ids::new_id();
        let now = self.now();
        let repo = self.index.write(|tx| {
            let repo = queries::ensure_local_repo(tx, name.as_str(), now)?;
            queries::insert_upload(tx, &id, repo, now)?;
            Ok(repo)
        })?;
        let file = self.store.create_upload(&id, Algorithm::Sha256)?;
        let session = Session::new(id, repo, true, file);
        Ok(self.sessions.insert(name.clone(), session))
    }

    /// A session for a one-request upload (`POST ?digest=`): no index row, since it lives only
    /// as long as the request. Hashes with the digest's own algorithm.
    pub fn start_single_request_upload(
        &self,
        name: &RepoName,
        algorithm: Algorithm,
    ) -> Result<Session> {
        let now = self.now();
        let repo = match self.index.read(|c| queries::repo_id(c, name.as_str()))? {
            Some(r) => r,
            None => self
                .index
                .write(|tx| queries::ensure_local_repo(tx, name.as_str(), now))?,
        };
        let id = ids::new_id();
        let file = self.store.create_upload(&id, algorithm)?;
        Ok(Session::new(id, repo, false, file))
    }

    /// Finds an upload of this repository: in memory, or in the index after a restart (recovered
    /// once, however many requests ask for it at the same time). With an index other nodes
    /// share, an upload into the bucket is always read from its row: the last request may have
    /// gone to another node.
    pub fn upload(&self, name: &RepoName, id: &str) -> Result<Shared> {
        if self.index.is_shared() && !self.store.is_local() {
            self.sessions.remove(id);
        }
        let (owner, shared) = self.sessions.get_or_recover(id, || {
            let repo = self.upload_owner(name, id)?;
            let saved = self.index.read(|c| queries::upload_state(c, id))?;
            let file = (self.store.recover_upload(id, saved.as_deref())?)
                .ok_or_else(|| Error::BlobUploadUnknown(id.to_owned()))?;
            Ok((name.clone(), Session::new(id.to_owned(), repo, true, file)))
        })?;
        match &owner == name {
            true => Ok(shared),
            false => Err(Error::BlobUploadUnknown(id.to_owned())),
        }
    }

    /// The repository id of an upload recorded in the index, if it belongs to `name`.
    fn upload_owner(&self, name: &RepoName, id: &str) -> Result<queries::RepoId> {
        let unknown = || Error::BlobUploadUnknown(id.to_owned());
        self.index.read(|c| {
            let owner = queries::upload_repo(c, id)?.ok_or_else(unknown)?;
            match queries::repo_id(c, name.as_str())? {
                Some(r) if r == owner => Ok(r),
                _ => Err(unknown()),
            }
        })
    }

    /// Verifies the received bytes against `digest` and makes them a blob of the repository.
    /// On a mismatch the upload is discarded: nothing of it is kept. The store stages the file
    /// only if it holds exactly the bytes that were hashed.
    pub fn finish_upload(&self, session: &mut Session, digest: &Digest) -> Result<u64> {
        session.check_open()?;
        let size = session.offset();
        let staged = session.file().finish(digest, |actual| {
            Error::DigestInvalid(format!(
                "the uploaded content has digest {actual}, not {digest}"
            ))
        });
        let staged = match staged {
            Ok(staged) => staged,
            Err(e) => {
                self.discard_upload(session)?;
                return Err(e);
            }
        };
        if let Err(e) = self.store.send(&staged, digest) {
            // The session stays: its file is intact, and the client may try the PUT again.
            staged.leave();
            return Err(e);
        }
        let key = digest.to_string();
        let now = self.now();
        self.index.write(|tx| {
            if session.persistent && !queries::delete_upload(tx, &session.id)? {
                return Err(Error::BlobUploadUnknown(session.id.clone()));
            }
            queries::insert_blob(tx, &key, size, now)?;
            self.store.commit(staged, digest)?;
            queries::link_blob(tx, session.repo, &key, now)
        })?;
        session.close();
        self.sessions.remove(&session.id);
        // What an upload into the bucket left beside the blob (its parts' object, its tails).
        if let Err(e) = session.file().remove() {
            log::warn!("upload {}: {e} (collection removes it later)", session.id);
        }
        Ok(size)
    }

    /// Keeps an upload's new state in its row (an upload into the object store, after each
    /// request), if the row still holds `base`, the state this request began from:
    /// BLOB_UPLOAD_UNKNOWN if the row went meanwhile (cancelled, purged), UploadBusy if another
    /// request (on another node) saved first. Its bytes are then not the upload's.
    pub fn save_upload(&self, id: &str, base: &str, state: &str) -> Result<()> {
        self.index.write(|tx| {
            if queries::save_upload_state(tx, id, base, state)? {
                return Ok(());
            }
            match queries::upload_repo(tx, id)? {
                None => Err(Error::BlobUploadUnknown(id.to_owned())),
                Some(_) => Err(Error::UploadBusy(format!(
                    "upload {id} was changed by another request meanwhile: \
                     ask where the upload ends, then send from there"
                ))),
            }
        })
    }

    /// Cancels an upload (DELETE on its URL).
    pub fn cancel_upload(&self, name: &RepoName, id: &str) -> Result<()> {
        match self.sessions.get(id) {
            Some((owner, _)) if &owner == name => {}
            Some(_) => return Err(Error::BlobUploadUnknown(id.to_owned())),
            None => {
                self.upload_owner(name, id)?;
            }
        }
        self.sessions.remove(id);
        let saved = self.index.write(|tx| {
            let saved = queries::upload_state(tx, id)?;
            queries::delete_upload(tx, id)?;
            Ok(saved)
        })?;
        remove_if_exists(&self.store.layout().upload(id))?;
        self.store.remove_upload_objects(id, saved.as_deref())
    }

    /// Drops a session and its bytes (failed verification, single-request failures).
    pub fn discard_upload(&self, session: &mut Session) -> Result<()> {
        session.close();
        self.sessions.remove(&session.id);
        if session.persistent {
            self.index
                .write(|tx| queries::delete_upload(tx, &session.id))?;
        }
        session.file().remove()
    }

    /// Deletes upload sessions started before `older_than` (Unix seconds), and upload files
    /// with no session (left by a crash, or by a single-request upload that died) last written
    /// before `orphans_before`; in a bucket, what no live upload owns from before
    /// `bucket_orphans_before` (a start passes `None`: another node may be writing it now, and
    /// collection removes it past the upload TTL). Returns how many went.
    pub fn purge_uploads(
        &self,
        older_than: i64,
        orphans_before: i64,
        bucket_orphans_before: Option<i64>,
    ) -> Result<u64> {
        let rows = self.index.read(queries::uploads)?;
        let mut purged = 0;
        for (id, created, saved) in &rows {
            if *created < older_than {
                self.sessions.remove(id);
                self.index.write(|tx| queries::delete_upload(tx, id))?;
                remove_if_exists(&self.store.layout().upload(id))?;
                self.store.remove_upload_objects(id, saved.as_deref())?;
                purged += 1;
            }
        }
        // In a bucket, what no row names: from a crash, a failed request, a one-request upload
        // that died.
        if let Some(before) = bucket_orphans_before {
            let live: std::collections::HashMap<&str, Option<&str>> = rows
                .iter()
                .filter(|(_, created, _)| *created >= older_than)
                .map(|(id, _, saved)| (id.as_str(), saved.as_deref()))
                .collect();
            purged += self.store.purge_upload_objects(&live, before)?;
        }
        let known: HashSet<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        let dir = self.store.layout().uploads_dir();
        for entry in entries_if_any(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or(0, crate::clock::unix);
            if !known.contains(name.as_str()) && modified < orphans_before {
                remove_if_exists(&entry.path())?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}
