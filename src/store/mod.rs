//! The blob store: content-addressed files under `<data-dir>/blobs/`, and the ways bytes get
//! there.
//!
//! Owns the crash-safe way a file becomes a blob: streamed bytes are written through an ingest
//! (`ingest.rs`: hashed as written, bounded, checked and fsynced when finished) to a temporary
//! name or an upload's file, bytes already in memory (a manifest) are staged whole; then the
//! file is renamed to the digest's path ([`Staged::publish`]) and the directory fsynced, so a
//! file under `blobs/` is always complete (invariant 1). Also the on-disk layout (`paths.rs`)
//! and the temporary files a crash leaves. It knows nothing of repositories or the index;
//! `registry` decides when a staged file is published, and is the only module that holds the
//! store: the others get ingests and staged files through it. Every call blocks, except the
//! [`Pipeline`] (`pipeline.rs`), which feeds an ingest from async code on blocking threads.

mod ingest;
pub mod paths;
mod pipeline;

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::ids;
pub use ingest::{hash_file, Finished, Ingest, Overflow, Resumable};
pub use paths::Layout;
pub use pipeline::Pipeline;

#[derive(Clone, Debug)]
pub struct BlobStore {
    layout: Layout,
}

/// A blob file found on disk.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

impl BlobStore {
    /// Opens the store at `root`, creating its directories if needed. The fan-out directories
    /// under `blobs/<algorithm>/` appear as blobs need them (`Staged::publish`).
    pub fn open(root: &Path) -> Result<BlobStore> {
        let layout = Layout::new(root);
        for dir in [
            layout.uploads_dir(),
            layout.tmp_dir(),
            layout.algorithm_dir(Algorithm::Sha256),
        ] {
            fs::create_dir_all(&dir).at("creating", &dir)?;
        }
        Ok(BlobStore { layout })
    }

    /// The store of an existing data directory, creating nothing.
    pub fn existing(root: &Path) -> Result<BlobStore> {
        let layout = Layout::new(root);
        let blobs = layout.blobs_dir();
        if !blobs.is_dir() {
            return Err(Error::Config(format!(
                "{}: not an atoll data directory (no blobs/)",
                root.display()
            )));
        }
        Ok(BlobStore { layout })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob(digest)
    }

    /// The size of a blob file, or `None` if there is none.
    pub fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.file_info(digest)?.map(|f| f.size))
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Corrupt(format!(
                "blob {digest} is in the index but its file {} is missing; run atoll --verify",
                path.display()
            )),
            _ => Error::io_at("opening", &path, e),
        })
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        fs::read(&path).at("reading", &path)
    }

    /// Writes `bytes` to a temporary file and fsyncs it, ready to [`Staged::publish`].
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
            layout: self.layout.clone(),
            keep: false,
        })
    }

    /// Deletes blob files one after another (garbage collection, once their rows are gone).
    pub fn unlinker(&self) -> Unlinker<'_> {
        Unlinker {
            store: self,
            dir: None,
        }
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
                    let dest = self.path(&d);
                    fs::rename(&path, &dest).at("restoring", &dest)?;
                    restored += 1;
                }
                _ => remove_if_exists(&path)?,
            }
        }
        fs::remove_dir(&dir).at("removing", &dir)?;
        Ok(restored)
    }

    /// The digest of every blob file on disk, in no particular order, read from the names alone:
    /// no file is stat'ed (a collection looks closer only at the files that no row names).
    /// Files whose names are not digests are skipped.
    pub fn list_digests(&self) -> Result<Vec<Digest>> {
        let mut found = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let adir = self.layout.algorithm_dir(algorithm);
            if !adir.is_dir() {
                continue;
            }
            for fan in fs::read_dir(&adir).at("listing", &adir)? {
                let fan = fan.at("listing", &adir)?.path();
                if !fan.is_dir() {
                    continue;
                }
                for entry in fs::read_dir(&fan).at("listing", &fan)? {
                    let entry = entry.at("listing", &fan)?;
                    found.extend(
                        entry
                            .file_name()
                            .to_str()
                            .and_then(|n| paths::digest_from_blob_path(algorithm, n)),
                    );
                }
            }
        }
        Ok(found)
    }

    /// A blob file's size and time, or `None` if there is none (any more).
    pub fn file_info(&self, digest: &Digest) -> Result<Option<BlobFile>> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(BlobFile {
                digest: digest.clone(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_at("reading", &path, e)),
        }
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

/// Deletes blob files by name within their fan-out directory, which stays open while the next
/// files are in it too (given digests in order, it opens each directory once). On tmpfs,
/// looking up the whole path of each file was a sixth of what an unlink cost.
pub struct Unlinker<'s> {
    store: &'s BlobStore,
    /// The directory open now: its algorithm and fan-out name, and its descriptor.
    dir: Option<((Algorithm, [u8; 2]), OwnedFd)>,
}

impl Unlinker<'_> {
    /// Deletes a blob's file: `false` if there was none.
    pub fn unlink(&mut self, digest: &Digest) -> Result<bool> {
        let hex = digest.hex();
        let key = (digest.algorithm(), [hex.as_bytes()[0], hex.as_bytes()[1]]);
        let fd = match &self.dir {
            Some((open, fd)) if *open == key => fd,
            _ => {
                let path = self.store.layout.blob_dir(digest);
                let flags = OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC;
                match rustix::fs::open(&path, flags, Mode::empty()) {
                    Ok(fd) => &self.dir.insert((key, fd)).1,
                    Err(Errno::NOENT) => return Ok(false),
                    Err(e) => return Err(Error::io_at("opening", &path, e.into())),
                }
            }
        };
        match rustix::fs::unlinkat(fd, hex, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io_at("removing", &self.store.path(digest), e.into())),
        }
    }
}

/// A complete, fsynced file waiting to become a blob. Dropped unpublished, it is deleted.
pub struct Staged {
    path: PathBuf,
    layout: Layout,
    /// Not deleted when dropped: published, or an upload's file being written (its session
    /// owns it).
    keep: bool,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to the digest's path and fsyncs the directory. If the blob already
    /// exists the rename replaces it with identical bytes, which is harmless and keeps this
    /// one atomic step. The caller has verified the digest.
    pub fn publish(mut self, digest: &Digest) -> Result<()> {
        let dir = self.layout.blob_dir(digest);
        ensure_dir(&dir)?;
        let dest = dir.join(digest.hex());
        fs::rename(&self.path, &dest).at("publishing", &dest)?;
        self.keep = true;
        sync_dir(&dir)
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
        let store = BlobStore::open(dir.path()).unwrap();
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
        let store = BlobStore::open(dir.path()).unwrap();
        let digests: Vec<Digest> = (0..40u8).map(|i| Digest::sha256_of(&[i])).collect();
        for d in &digests[..30] {
            store
                .stage_bytes(d.hex().as_bytes())
                .unwrap()
                .publish(d)
                .unwrap();
        }
        let mut sorted = digests.clone();
        sorted.sort_by(|a, b| a.hex().cmp(b.hex()));
        let mut unlinker = store.unlinker();
        let gone: Vec<bool> = sorted.iter().map(|d| unlinker.unlink(d).unwrap()).collect();
        for (d, went) in sorted.iter().zip(gone) {
            assert_eq!(went, digests[..30].contains(d), "{d}");
        }
        assert!(store.list_digests().unwrap().is_empty());
        assert!(
            !store.unlinker().unlink(&digests[0]).unwrap(),
            "gone already"
        );
    }
}
