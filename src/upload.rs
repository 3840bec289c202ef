//! Upload sessions: the bytes of a blob on their way in.
//!
//! A session is a file `uploads/<id>` plus the running hash of its bytes. Bytes are hashed as
//! they arrive, so the final PUT verifies the digest without reading the file again. Each PATCH
//! (or the body of a final PUT) is all or nothing: if the client hangs up, sends fewer bytes than
//! it announced, or the disk fills, the file is cut back to where the request started and the
//! session stays usable at its old offset. The index row of a session is the registry's
//! business; this module owns the bytes, the hash and the in-memory table of live sessions.
//!
//! While a body streams in, the bytes already written are flushed to the disk behind it (an
//! `fdatasync` on a blocking thread of its own every [`WRITE_BEHIND`] bytes), so the fsync that
//! publishes the blob finds little left to write: the disk works while the network does, not
//! after it. (`sync_file_range` and `posix_fadvise` from the writing thread were tried: they
//! shortened that fsync, not the push; see bench/results/findings.md.)

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use smol::io::{AsyncRead, AsyncReadExt};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::index::queries::RepoId;
use crate::reference::RepoName;
use crate::store::check_room;

/// Bytes read from the client per step. Large enough that the per-step cost (a hand-off to a
/// blocking thread) is noise; two are in flight at once (one being read, one being written).
const CHUNK: usize = 1 << 20;

/// Bytes written between two write-behind flushes (when the last one has finished).
const WRITE_BEHIND: u64 = 8 << 20;

/// One upload in progress.
pub struct Session {
    pub id: String,
    pub repo: RepoId,
    /// False for a one-request upload (`POST ?digest=`), which has no index row.
    pub persistent: bool,
    path: PathBuf,
    offset: u64,
    hasher: Hasher,
    /// Published or discarded: a request that found the session just before that gets
    /// `BLOB_UPLOAD_UNKNOWN`, never a file that is now a blob.
    closed: bool,
}

/// A live session behind its lock. A request holds the lock while it uses the session, so two
/// PATCHes to one upload cannot interleave their bytes; `lock_arc` gives a guard that can move
/// into a blocking task.
pub type Shared = Arc<smol::lock::Mutex<Session>>;

/// One upload's place in the table: empty while its session is being recovered from disk.
type Slot = Arc<Mutex<Option<(RepoName, Shared)>>>;

/// The live sessions, shared by every connection, each with the repository it belongs to
/// (checked without taking the session's lock).
///
/// There is at most one [`Session`] per upload id in the process, whoever asks: a session
/// recovered after a restart is recovered once, under its slot's lock, and every request that
/// asks meanwhile waits for that one. (Two copies of one session would each append to the one
/// file and each hash only its own bytes.)
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Slot>>,
}

impl Sessions {
    pub fn insert(&self, name: RepoName, session: Session) -> Shared {
        let id = session.id.clone();
        let s = Arc::new(smol::lock::Mutex::new(session));
        let slot = Arc::new(Mutex::new(Some((name, s.clone()))));
        self.table().insert(id, slot);
        s
    }

    /// The live session `id`, if one is in memory (waits for a recovery under way). Blocking.
    pub fn get(&self, id: &str) -> Option<(RepoName, Shared)> {
        let slot = self.table().get(id).cloned()?;
        let found = lock(&slot).clone();
        found
    }

    /// The live session `id`, or the one `recover` makes, made once however many requests ask
    /// at the same time: the others wait for it. A failed recovery leaves no trace. Blocking.
    pub fn get_or_recover(
        &self,
        id: &str,
        recover: impl FnOnce() -> Result<(RepoName, Session)>,
    ) -> Result<(RepoName, Shared)> {
        let slot = self.table().entry(id.to_owned()).or_default().clone();
        let mut held = lock(&slot);
        if let Some(found) = held.as_ref() {
            return Ok(found.clone());
        }
        match recover() {
            Ok((name, session)) => {
                let shared = Arc::new(smol::lock::Mutex::new(session));
                *held = Some((name.clone(), shared.clone()));
                Ok((name, shared))
            }
            Err(e) => {
                drop(held);
                self.forget_empty(id, &slot);
                Err(e)
            }
        }
    }

    pub fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops `slot` from the table if it is still there and still empty.
    fn forget_empty(&self, id: &str, slot: &Slot) {
        let mut table = self.table();
        if table
            .get(id)
            .is_some_and(|s| Arc::ptr_eq(s, slot) && lock(s).is_none())
        {
            table.remove(id);
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        lock(&self.live)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// A new, empty session; creates its file. Blocking.
    pub fn create(
        id: String,
        repo: RepoId,
        persistent: bool,
        path: PathBuf,
        algorithm: Algorithm,
    ) -> Result<Session> {
        File::create(&path).at("creating upload", &path)?;
        Ok(Session {
            id,
            repo,
            persistent,
            path,
            offset: 0,
            hasher: algorithm.hasher(),
            closed: false,
        })
    }

    /// A session found in the index after a restart: re-hashes what its file holds. Blocking.
    pub fn recover(id: String, repo: RepoId, path: PathBuf) -> Result<Session> {
        let mut hasher = Algorithm::Sha256.hasher();
        let offset = hash_file(&path, &mut hasher).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobUploadUnknown(id.clone()),
            _ => Error::io_at("reading upload", &path, e),
        })?;
        Ok(Session {
            id,
            repo,
            persistent: true,
            path,
            offset,
            hasher,
            closed: false,
        })
    }

    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Marks the session published or discarded: nothing more is appended to its file.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// `BLOB_UPLOAD_UNKNOWN` once the session was published or discarded.
    pub fn check_open(&self) -> Result<()> {
        match self.closed {
            false => Ok(()),
            true => Err(Error::BlobUploadUnknown(self.id.clone())),
        }
    }

    /// Appends a request body. `expected` is the length the client announced (Content-Length
    /// or Content-Range); receiving another number of bytes fails the request. On any error the
    /// session is left exactly as it was before the call.
    pub async fn append(
        &mut self,
        body: &mut (impl AsyncRead + Unpin),
        expected: Option<u64>,
    ) -> Result<u64> {
        self.check_open()?;
        let start = self.offset;
        let saved = self.hasher.clone();
        match self.stream_in(body, expected).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.hasher = saved;
                self.offset = start;
                let path = self.path.clone();
                smol::unblock(move || truncate(&path, start)).await?;
                Err(e)
            }
        }
    }

    async fn stream_in(
        &mut self,
        body: &mut (impl AsyncRead + Unpin),
        expected: Option<u64>,
    ) -> Result<u64> {
        let path = self.path.clone();
        let file = smol::unblock(move || {
            if let Some(needed) = expected {
                check_room(&path, needed, "the upload")?;
            }
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => Error::Corrupt(format!(
                        "upload file {} vanished (purged as stale?)",
                        path.display()
                    )),
                    _ => Error::io_at("opening upload", &path, e),
                })
        })
        .await?;
        let mut behind = WriteBehind::new(&file, &self.path);
        let mut writer = Writer {
            file: Some(file),
            hasher: Some(self.hasher.clone()),
            path: self.path.clone(),
        };
        let mut pending: Option<smol::Task<WriteStep>> = None;
        let mut spare: Option<Vec<u8>> = None;
        let mut received: u64 = 0;
        loop {
            let mut buf = spare.take().unwrap_or_else(|| vec![0u8; CHUNK]);
            buf.resize(CHUNK, 0);
            let read = read_full(body, &mut buf).await;
            // Finish the previous write before deciding anything, so an error leaves no write
            // running behind our back.
            if let Some(task) = pending.take() {
                let step = task.await;
                writer.file = Some(step.file);
                writer.hasher = Some(step.hasher);
                spare = Some(step.buf);
                step.result?;
                behind.wrote(step.written).await?;
            }
            let n = read.map_err(|e| {
                Error::BlobUploadInvalid(format!("reading the request body failed: {e}"))
            })?;
            if n == 0 {
                break;
            }
            received += n as u64;
            if let Some(limit) = expected {
                if received > limit {
                    return Err(Error::SizeInvalid(format!(
                        "body is longer than the {limit} bytes announced"
                    )));
                }
            }
            buf.truncate(n);
            pending = Some(writer.spawn_write(buf));
        }
        if let Some(limit) = expected {
            if received != limit {
                return Err(Error::SizeInvalid(format!(
                    "received {received} bytes of the {limit} announced (client hung up?)"
                )));
            }
        }
        behind.finish().await?;
        self.hasher = writer
            .hasher
            .take()
            .expect("hasher is back after the last write");
        self.offset += received;
        Ok(received)
    }

    /// The digest of everything received, in `algorithm`. Sessions hash with sha256 as bytes
    /// arrive; a sha512 digest re-reads the file. Blocking.
    pub fn digest(&self, algorithm: Algorithm) -> Result<Digest> {
        if algorithm == self.hasher.algorithm() {
            return Ok(self.hasher.clone().finish());
        }
        let mut h = algorithm.hasher();
        hash_file(&self.path, &mut h).at("reading upload", &self.path)?;
        Ok(h.finish())
    }
}

/// The file and hash, handed back and forth between the request task and blocking threads.
struct Writer {
    file: Option<File>,
    hasher: Option<Hasher>,
    path: PathBuf,
}

struct WriteStep {
    file: File,
    hasher: Hasher,
    buf: Vec<u8>,
    written: u64,
    result: Result<()>,
}

impl Writer {
    fn spawn_write(&mut self, buf: Vec<u8>) -> smol::Task<WriteStep> {
        let mut file = self.file.take().expect("file is back");
        let mut hasher = self.hasher.take().expect("hasher is back");
        let path = self.path.clone();
        smol::unblock(move || {
            // Hash only what was written, so the hash always matches the file.
            let result = file.write_all(&buf).at("writing upload", &path);
            if result.is_ok() {
                hasher.update(&buf);
            }
            WriteStep {
                file,
                hasher,
                written: buf.len() as u64,
                buf,
                result,
            }
        })
    }
}

/// Flushes an upload file to the disk while more is being written to it: one `fdatasync` at a
/// time, on a second descriptor of the file, each started once [`WRITE_BEHIND`] bytes were
/// written since the last. A failed flush fails the request: the kernel reports a write-back
/// error to one `fsync` only, so the publishing fsync might not see it again.
struct WriteBehind {
    file: Option<Arc<File>>,
    path: PathBuf,
    unflushed: u64,
    running: Option<smol::Task<io::Result<()>>>,
}

impl WriteBehind {
    /// Without a second descriptor (out of descriptors), nothing is flushed early.
    fn new(file: &File, path: &Path) -> WriteBehind {
        WriteBehind {
            file: file.try_clone().ok().map(Arc::new),
            path: path.to_path_buf(),
            unflushed: 0,
            running: None,
        }
    }

    /// `n` more bytes were written.
    async fn wrote(&mut self, n: u64) -> Result<()> {
        self.unflushed += n;
        if self.running.as_ref().is_some_and(|t| t.is_finished()) {
            self.finish().await?;
        }
        if self.running.is_none() && self.unflushed >= WRITE_BEHIND {
            if let Some(file) = self.file.clone() {
                self.unflushed = 0;
                self.running = Some(smol::unblock(move || file.sync_data()));
            }
        }
        Ok(())
    }

    /// Waits for the flush still running, if any.
    async fn finish(&mut self) -> Result<()> {
        match self.running.take() {
            Some(task) => task.await.at("flushing upload", &self.path),
            None => Ok(()),
        }
    }
}

/// Reads until `buf` is full or the body ends; returns the bytes read.
async fn read_full(body: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match body.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn truncate(path: &PathBuf, len: u64) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .at("rolling back upload", path)
}

/// Feeds a whole file to `hasher`; returns its length.
pub fn hash_file(path: &PathBuf, hasher: &mut Hasher) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_asked_for_by_many_at_once_is_recovered_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::default();
        let recoveries = std::sync::atomic::AtomicUsize::new(0);
        let name: RepoName = "r".parse().unwrap();
        let found: Vec<Shared> = std::thread::scope(|s| {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let (_, shared) = sessions
                            .get_or_recover("u", || {
                                recoveries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(50));
                                let path = dir.path().join("u");
                                Session::create("u".into(), 1, true, path, Algorithm::Sha256)
                                    .map(|s| (name.clone(), s))
                            })
                            .unwrap();
                        shared
                    })
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(recoveries.into_inner(), 1);
        assert!(found.iter().all(|s| Arc::ptr_eq(s, &found[0])));
    }

    #[test]
    fn a_failed_recovery_leaves_no_slot_and_a_closed_session_takes_no_bytes() {
        let sessions = Sessions::default();
        let failed = sessions.get_or_recover("u", || Err(Error::BlobUploadUnknown("u".into())));
        assert!(matches!(failed, Err(Error::BlobUploadUnknown(_))));
        assert!(sessions.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u");
        let mut s = Session::create("u".into(), 1, true, path.clone(), Algorithm::Sha256).unwrap();
        s.close();
        let appended = smol::block_on(s.append(&mut &b"late"[..], Some(4)));
        assert!(matches!(appended, Err(Error::BlobUploadUnknown(_))));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
