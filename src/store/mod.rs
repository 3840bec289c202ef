//! The blob store: where bytes are staged, checked and published as blobs, over one of two
//! engines.
//!
//! Owns the crash-safe way bytes become a blob. Streamed bytes are written through an ingest
//! (`ingest.rs`: hashed as written, bounded, checked and fsynced when finished) to a temporary
//! name or an upload's file in the data directory; bytes already in memory (a manifest) are
//! staged whole. A staged, verified file is then published by the engine (`engine.rs`): the
//! data directory's `blobs/` (`disk.rs`, the default) or an S3 bucket (`object.rs`), in two
//! steps around the index transaction that records it ([`BlobStore::send`],
//! [`BlobStore::commit`]), so a blob is readable only complete (invariant 1). Also the
//! data directory's layout (`paths.rs`) and the temporary files a crash leaves. It knows
//! nothing of repositories or the index; `registry` decides when a staged file is published,
//! and is the only module that holds the store. Every call blocks, except the [`Pipeline`]
//! (`pipeline.rs`), which feeds an ingest from async code on blocking threads.

mod disk;
pub mod engine;
mod ingest;
mod multipart;
mod object;
pub mod paths;
mod pipeline;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_types::Url;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::ids;
pub use engine::{BlobFile, Deleter, Engine, Opened, Remote};
pub use ingest::{hash_file, hash_reader, Finished, Ingest, Overflow, Resumable};
pub use multipart::Multipart;
pub use paths::Layout;
pub use pipeline::Pipeline;

/// Which engine holds the blobs (`--blob-store`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// `<data-dir>/blobs/`.
    #[default]
    Disk,
    S3(Box<crate::s3::S3Config>),
}

#[derive(Clone)]
pub struct BlobStore {
    layout: Layout,
    engine: Arc<dyn Engine>,
    /// The bucket, on the object-store engine: uploads stream into it.
    bucket: Option<Arc<crate::s3::S3>>,
}

/// An upload's bytes between requests: a file of the data directory (the disk engine), or a
/// multipart upload in the bucket (the object store).
#[derive(Clone)]
pub enum UploadBytes {
    File(Resumable),
    Object(Multipart),
}

impl UploadBytes {
    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        match self {
            UploadBytes::File(f) => f.offset(),
            UploadBytes::Object(m) => m.offset(),
        }
    }

    /// The bytes as a blob of `expected`, ready to publish, if they hash to it; else the error
    /// `mismatch` makes.
    pub fn finish(
        &self,
        expected: &Digest,
        mismatch: impl FnOnce(&Digest) -> Error,
    ) -> Result<Staged> {
        match self {
            UploadBytes::File(f) => f.finish(expected, mismatch),
            UploadBytes::Object(m) => m.finish(expected, mismatch),
        }
    }

    /// Deletes what the upload holds (cancelled, failed, or published: a published file was
    /// renamed away already, a published object was copied).
    pub fn remove(&self) -> Result<()> {
        match self {
            UploadBytes::File(f) => f.remove(),
            UploadBytes::Object(m) => m.remove(),
        }
    }
}

impl BlobStore {
    /// Opens the store at `root`, creating its directories if needed, over the engine
    /// `config` names (checked: an unreachable bucket fails here, named). The fan-out
    /// directories under `blobs/<algorithm>/` appear as blobs need them.
    pub fn open(root: &Path, config: &StoreConfig) -> Result<BlobStore> {
        let layout = Layout::new(root);
        let mut dirs = vec![layout.uploads_dir(), layout.tmp_dir()];
        if *config == StoreConfig::Disk {
            dirs.push(layout.algorithm_dir(Algorithm::Sha256));
        }
        for dir in dirs {
            fs::create_dir_all(&dir).at("creating", &dir)?;
        }
        BlobStore::with_engine(layout, config)
    }

    /// A new upload, hashed in `algorithm` as it grows: a file, or a multipart upload that
    /// starts with its first part.
    pub fn create_upload(&self, id: &str, algorithm: Algorithm) -> Result<UploadBytes> {
        match &self.bucket {
            Some(s3) => Ok(UploadBytes::Object(Multipart::new(
                s3.clone(),
                id,
                algorithm,
            ))),
            None => self
                .create_upload_file(id, algorithm)
                .map(UploadBytes::File),
        }
    }

    /// Upload `id` after a restart, from its file or from the state its index row keeps
    /// (`saved`); `None` if it has no file.
    pub fn recover_upload(&self, id: &str, saved: Option<&str>) -> Result<Option<UploadBytes>> {
        match (&self.bucket, saved) {
            (Some(s3), Some(saved)) => {
                Multipart::recover(s3.clone(), id, saved).map(|m| Some(UploadBytes::Object(m)))
            }
            (Some(s3), None) => Ok(Some(UploadBytes::Object(Multipart::new(
                s3.clone(),
                id,
                Algorithm::Sha256,
            )))),
            (None, _) => Ok(self.recover_upload_file(id)?.map(UploadBytes::File)),
        }
    }

    /// Removes what an upload left in the bucket, when the store is one (a stale session).
    pub fn remove_upload_objects(&self, id: &str, saved: Option<&str>) -> Result<()> {
        let Some(s3) = &self.bucket else {
            return Ok(());
        };
        let upload = saved.and_then(multipart::upload_named);
        smol::block_on(multipart::remove_upload(s3, id, upload.as_deref()))
    }

    /// Removes from the bucket, when the store is one, the upload objects that no live upload
    /// owns and that are older than `before` (`live`: each live upload's id and saved state).
    pub fn purge_upload_objects(
        &self,
        live: &std::collections::HashMap<&str, Option<&str>>,
        before: i64,
    ) -> Result<u64> {
        match &self.bucket {
            Some(s3) => smol::block_on(multipart::purge(s3, live, before)),
            None => Ok(0),
        }
    }

    /// The store of an existing data directory, creating nothing.
    pub fn existing(root: &Path, config: &StoreConfig) -> Result<BlobStore> {
        let layout = Layout::new(root);
        if *config == StoreConfig::Disk && !layout.blobs_dir().is_dir() {
            return Err(Error::Config(format!(
                "{}: not an atoll data directory (no blobs/)",
                root.display()
            )));
        }
        BlobStore::with_engine(layout, config)
    }

    fn with_engine(layout: Layout, config: &StoreConfig) -> Result<BlobStore> {
        let (engine, bucket): (Arc<dyn Engine>, _) = match config {
            StoreConfig::Disk => (Arc::new(disk::Disk::new(layout.clone())), None),
            StoreConfig::S3(c) => {
                let s3 = Arc::new(crate::s3::S3::new(c, Arc::new(crate::net::Http::new()))?);
                let engine = object::Object::new(s3.clone());
                engine.check()?;
                (Arc::new(engine), Some(s3))
            }
        };
        Ok(BlobStore {
            layout,
            engine,
            bucket,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// True when the blobs are in the data directory (the disk engine).
    pub fn is_local(&self) -> bool {
        self.bucket.is_none()
    }

    /// Where the blobs are (`disk /srv/atoll/blobs`, `s3://bucket/prefix at URL`).
    pub fn describe(&self) -> String {
        self.engine.describe()
    }

    /// For readiness: the data directory takes a write, and the engine answers.
    pub fn check(&self) -> Result<()> {
        drop(self.stage_bytes(b"ready")?);
        self.engine.check()
    }

    /// The size of a blob, or `None` if there is none.
    pub fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.engine.stat(digest)?.map(|f| f.size))
    }

    /// A blob's size and time, or `None` if there is none (any more).
    pub fn file_info(&self, digest: &Digest) -> Result<Option<BlobFile>> {
        self.engine.stat(digest)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<Opened> {
        self.engine.open(digest)
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.engine.read(digest)
    }

    /// Publishing, step one, before the index transaction that records the blob.
    pub fn send(&self, staged: &Staged, digest: &Digest) -> Result<()> {
        self.engine.send(staged, digest)
    }

    /// Publishing, step two, inside that transaction. The caller has verified the digest.
    pub fn commit(&self, staged: Staged, digest: &Digest) -> Result<()> {
        self.engine.commit(staged, digest)
    }

    /// Both steps at once, for tests that make blobs without an index.
    #[cfg(test)]
    pub fn publish(&self, staged: Staged, digest: &Digest) -> Result<()> {
        self.send(&staged, digest)?;
        self.commit(staged, digest)
    }

    /// The digest of every blob, in no particular order, read from names alone, handed to
    /// `each` as it is read.
    pub fn for_each_digest(&self, mut each: impl FnMut(Digest)) -> Result<()> {
        self.engine.list(&mut each)
    }

    /// Deletes blobs one after another (garbage collection, once their rows are gone).
    pub fn unlinker(&self) -> Box<dyn Deleter + '_> {
        self.engine.deleter()
    }

    /// Moves a damaged blob out of the way (`--verify --repair`).
    pub fn quarantine(&self, digest: &Digest) -> Result<()> {
        self.engine.quarantine(digest)
    }

    /// A short-lived URL to fetch a blob from directly, if the engine has them.
    pub fn presign(&self, digest: &Digest, valid: Duration) -> Option<Url> {
        self.engine.presign(digest, valid)
    }

    /// Writes `bytes` to a temporary file and fsyncs it, ready to publish.
    pub fn stage_bytes(&self, bytes: &[u8]) -> Result<Staged> {
        let staged = self.temp_file()?;
        let mut f = File::create(&staged.path).at("creating", &staged.path)?;
        f.write_all(bytes).at("writing", &staged.path)?;
        f.sync_all().at("syncing", &staged.path)?;
        Ok(staged)
    }

    /// A fresh path under `tmp/`, deleted when the guard drops unless published. Its name
    /// starts with this process's id, so that [`Self::clean_tmp`] can tell a crash's leftovers
    /// from the files of an `atoll --import` running beside the server.
    fn temp_file(&self) -> Result<Staged> {
        let name = format!("{}-{}", std::process::id(), ids::new_id());
        Ok(Staged {
            path: self.layout.tmp_dir().join(name),
            keep: false,
            in_engine: false,
        })
    }

    /// Empties the `trash/` directory that atoll parked blobs in while collecting, before its
    /// collections recorded doomed files in the index (migration 0003): a blob `indexed` says still has its row is put back (its
    /// collection was interrupted before the row went), any other file is deleted, then the
    /// directory goes. Returns how many blobs were put back.
    pub fn restore_old_trash(&self, indexed: impl Fn(&Digest) -> Result<bool>) -> Result<u64> {
        let dir = self.layout.root().join("trash");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io_at("listing", &dir, e)),
        };
        let mut restored = 0;
        for entry in entries {
            let path = entry.at("listing", &dir)?.path();
            // Named `<algorithm>-<hex>`.
            let digest = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('-'))
                .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok());
            match digest {
                Some(d) if indexed(&d)? => {
                    ensure_dir(&self.layout.blob_dir(&d))?;
                    let dest = self.layout.blob(&d);
                    fs::rename(&path, &dest).at("restoring", &dest)?;
                    restored += 1;
                }
                _ => remove_if_exists(&path)?,
            }
        }
        fs::remove_dir(&dir).at("removing", &dir)?;
        Ok(restored)
    }

    /// Removes temporary files left by a crash (nothing refers to them): those whose writer
    /// is no longer running, by the process id their name starts with, and this process's own
    /// (called at startup, before it writes any: a server that is PID 1 in a container has
    /// the same id on every start). `running(pid)` says whether a process lives.
    pub fn clean_tmp(&self, running: impl Fn(u32) -> bool) -> Result<u64> {
        let dir = self.layout.tmp_dir();
        let mut n = 0;
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let entry = entry.at("listing", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .split_once('-')
                .and_then(|(p, _)| p.parse::<u32>().ok());
            let leftover = match owner {
                Some(pid) => pid == std::process::id() || !running(pid),
                // Named before temp files carried their writer's id: from an older atoll.
                None => true,
            };
            if leftover {
                remove_if_exists(&entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A complete, fsynced file waiting to become a blob. Dropped unpublished, it is deleted.
pub struct Staged {
    path: PathBuf,
    /// Not deleted when dropped: published, or an upload's file being written (its session
    /// owns it).
    keep: bool,
    /// No local file: the bytes are in the engine already (an object-store upload).
    in_engine: bool,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes an upload put in the engine itself, at the blob's place: nothing local to send.
    pub fn in_engine() -> Staged {
        Staged {
            path: PathBuf::new(),
            keep: true,
            in_engine: true,
        }
    }

    /// Leaves the file where it is, unpublished (an upload's file, for the session to retry).
    pub fn leave(mut self) {
        self.keep = true;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `dir` and any missing parents, fsyncing the parent of each one created, so that a
/// blob renamed into it survives a power cut.
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io_at("creating", dir, e)),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Refuses at once what the disk cannot hold (disk full: 507 for a push), instead of writing
/// until it is full and then rolling back: an absurd announced size costs nothing. `path` is on
/// the filesystem that will hold the bytes; `what` names who announced them (an upload, a
/// bundle's entry).
fn check_room(path: &Path, needed: u64, what: &str) -> Result<()> {
    let Ok(fs) = rustix::fs::statvfs(path) else {
        return Ok(()); // unknown: the write itself will tell
    };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    if needed <= free {
        return Ok(());
    }
    Err(Error::io(
        format!(
            "{what} announces {needed} bytes, and the disk has {free} bytes free ({})",
            path.display()
        ),
        io::Error::from(io::ErrorKind::StorageFull),
    ))
}

/// fsyncs a directory, so a rename into it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("syncing", dir)
}

/// The entries of one of the data directory's own folders (`uploads/`, `tmp/`); none if it is
/// not there: `atoll --gc` on a cluster may run from a host that is no node, on an empty
/// `--data-dir`.
pub fn entries_if_any(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.at("listing", dir)).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io_at("listing", dir, e)),
    }
}

/// `bytes`, read whole (a manifest, a config), if they hash to `digest`: a damaged blob is an
/// error, never served under a digest it does not have. (A streamed blob is `--verify`'s.)
fn checked(digest: &Digest, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let actual = Digest::of(digest.algorithm(), &bytes);
    if &actual != digest {
        return Err(Error::Corrupt(format!(
            "blob {digest}: the stored bytes hash to {actual}; run atoll --verify --repair"
        )));
    }
    Ok(bytes)
}

pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io_at("removing", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_tmp_removes_what_dead_writers_and_earlier_runs_left_and_spares_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap();
        let tmp = store.layout().tmp_dir();
        let me = std::process::id();
        for name in [
            format!("{me}-mine"),
            "7-dead".to_owned(),
            "8-alive".to_owned(),
            "oldstyle".to_owned(),
        ] {
            fs::write(tmp.join(name), b"x").unwrap();
        }
        assert_eq!(store.clean_tmp(|pid| pid == 8 || pid == me).unwrap(), 3);
        let left: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["8-alive"]);
    }

    #[test]
    fn an_unlinker_deletes_files_across_directories_and_knows_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap();
        let digests: Vec<Digest> = (0..40u8).map(|i| Digest::sha256_of(&[i])).collect();
        for d in &digests[..30] {
            let staged = store.stage_bytes(d.hex().as_bytes()).unwrap();
            store.publish(staged, d).unwrap();
        }
        let mut sorted = digests.clone();
        sorted.sort_by(|a, b| a.hex().cmp(b.hex()));
        let mut unlinker = store.unlinker();
        let gone: Vec<bool> = sorted.iter().map(|d| unlinker.delete(d).unwrap()).collect();
        for (d, went) in sorted.iter().zip(gone) {
            assert_eq!(went, digests[..30].contains(d), "{d}");
        }
        let mut listed = 0;
        store.for_each_digest(|_| listed += 1).unwrap();
        assert_eq!(listed, 0);
        assert!(
            !store.unlinker().delete(&digests[0]).unwrap(),
            "gone already"
        );
    }
}
