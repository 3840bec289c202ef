//! The disk engine, atoll's default: blobs as files under `<data-dir>/blobs/`, named by digest
//! (`paths.rs`). A staged file becomes a blob by a rename within the data directory's
//! filesystem, and the directory is fsynced, so a file under `blobs/` is always complete
//! (invariant 1).

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::engine::{BlobFile, Deleter, Engine, Opened};
use super::{ensure_dir, paths, sync_dir, Layout, Staged};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};

pub struct Disk {
    layout: Layout,
}

impl Disk {
    pub fn new(layout: Layout) -> Disk {
        Disk { layout }
    }
}

impl Engine for Disk {
    fn describe(&self) -> String {
        format!("disk {}", self.layout.blobs_dir().display())
    }

    fn check(&self) -> Result<()> {
        Ok(()) // the data directory's write check (`BlobStore::check`) covers it
    }

    fn stat(&self, digest: &Digest) -> Result<Option<BlobFile>> {
        let path = self.layout.blob(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(BlobFile {
                digest: digest.clone(),
                size: meta.len(),
                modified: meta.modified().map_or(0, crate::clock::unix),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_at("reading", &path, e)),
        }
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.layout.blob(digest);
        super::checked(digest, fs::read(&path).at("reading", &path)?)
    }

    fn open(&self, digest: &Digest) -> Result<Opened> {
        let path = self.layout.blob(digest);
        File::open(&path)
            .map(Opened::File)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::Corrupt(format!(
                    "blob {digest} is in the index but its file {} is missing; run atoll --verify",
                    path.display()
                )),
                _ => Error::io_at("opening", &path, e),
            })
    }

    fn send(&self, _staged: &Staged, _digest: &Digest) -> Result<()> {
        Ok(()) // the rename in `commit` is all there is
    }

    /// Renames the file to the digest's path and fsyncs the directory. If the blob already
    /// exists the rename replaces it with identical bytes, which is harmless and keeps this
    /// one atomic step.
    fn commit(&self, mut staged: Staged, digest: &Digest) -> Result<()> {
        if staged.in_engine {
            return Err(Error::Corrupt(format!(
                "blob {digest}: bytes of another engine handed to the disk"
            )));
        }
        let dir = self.layout.blob_dir(digest);
        ensure_dir(&dir)?;
        let dest = dir.join(digest.hex());
        fs::rename(&staged.path, &dest).at("publishing", &dest)?;
        staged.keep = true;
        sync_dir(&dir)
    }

    /// Read from the names alone: no file is stat'ed (a collection looks closer only at the
    /// files that no row names). Files whose names are not digests are skipped.
    fn list(&self, each: &mut dyn FnMut(Digest)) -> Result<()> {
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
                    if let Some(d) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| paths::digest_from_blob_path(algorithm, n))
                    {
                        each(d);
                    }
                }
            }
        }
        Ok(())
    }

    fn deleter(&self) -> Box<dyn Deleter + '_> {
        Box::new(Unlinker {
            layout: &self.layout,
            dir: None,
        })
    }

    fn quarantine(&self, digest: &Digest) -> Result<()> {
        let dir = self.layout.root().join("quarantine");
        fs::create_dir_all(&dir).at("creating", &dir)?;
        let from = self.layout.blob(digest);
        let to = dir.join(format!("{}-{}", digest.algorithm().name(), digest.hex()));
        match fs::rename(&from, to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io_at("moving to quarantine", &from, e)),
        }
    }
}

/// Deletes blob files by name within their fan-out directory, which stays open while the next
/// files are in it too (given digests in order, it opens each directory once). On tmpfs,
/// looking up the whole path of each file was a sixth of what an unlink cost.
struct Unlinker<'s> {
    layout: &'s Layout,
    /// The directory open now: its algorithm and fan-out name, and its descriptor.
    dir: Option<((Algorithm, [u8; 2]), OwnedFd)>,
}

impl Deleter for Unlinker<'_> {
    fn delete(&mut self, digest: &Digest) -> Result<bool> {
        let hex = digest.hex();
        let key = (digest.algorithm(), [hex.as_bytes()[0], hex.as_bytes()[1]]);
        let fd = match &self.dir {
            Some((open, fd)) if *open == key => fd,
            _ => {
                let path = self.layout.blob_dir(digest);
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
            Err(e) => Err(Error::io_at(
                "removing",
                &self.layout.blob(digest),
                e.into(),
            )),
        }
    }
}
