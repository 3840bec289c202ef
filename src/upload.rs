//! Upload sessions: the bytes of a blob on their way in, and the in-memory table of live
//! sessions.
//!
//! A session is an upload's bytes with their length and running hash (the store's
//! [`UploadBytes`]: a file of the data directory, or a multipart upload in the bucket), so the
//! final PUT verifies the digest without reading the bytes again. Each PATCH (or the body of a
//! final PUT) is all or nothing: on the disk it streams into an ingest that continues the file,
//! through the store's [`Pipeline`] (written on blocking threads, flushed behind); in the
//! bucket it goes out as parts ([`Multipart`]), and the upload's new state is saved to its
//! index row before the session takes it. If the client hangs up, sends fewer or more bytes
//! than it announced, or the store fails, the session stays usable at its old offset. The index
//! row of a session is the registry's business: it hands `append` the way to save a state.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use smol::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};
use crate::index::queries::RepoId;
use crate::reference::RepoName;
use crate::store::{Pipeline, UploadBytes};

/// Bytes read from the client per step. Large enough that the per-step cost (a hand-off to a
/// blocking thread) is noise; two are in flight at once (one being read, one being written).
const CHUNK: usize = 1 << 20;

/// One upload in progress.
pub struct Session {
    pub id: String,
    pub repo: RepoId,
    /// False for a one-request upload (`POST ?digest=`), which has no index row.
    pub persistent: bool,
    /// The bytes received so far, and their hash.
    file: UploadBytes,
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
    pub fn new(id: String, repo: RepoId, persistent: bool, file: UploadBytes) -> Session {
        Session {
            id,
            repo,
            persistent,
            file,
            closed: false,
        }
    }

    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.file.offset()
    }

    /// The upload's bytes, to finish or remove.
    pub fn file(&self) -> &UploadBytes {
        &self.file
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
    /// or Content-Range); receiving another number of bytes fails the request. `save` keeps
    /// the state of an upload into the bucket in its index row, given the state it replaces
    /// and the new one (a disk upload's file is its own state). On any error the session is
    /// left exactly as it was before the call.
    pub async fn append<F: Future<Output = Result<()>>>(
        &mut self,
        body: &mut (impl AsyncRead + Unpin),
        expected: Option<u64>,
        save: impl FnOnce(String, String) -> F,
    ) -> Result<u64> {
        self.check_open()?;
        let file = match &self.file {
            UploadBytes::File(f) => f.clone(),
            UploadBytes::Object(m) => {
                let (next, n) = m.appended(body, expected, self.persistent).await?;
                if self.persistent {
                    save(m.saved(), next.saved()).await?;
                }
                self.file = UploadBytes::Object(next);
                return Ok(n);
            }
        };
        let ingest = smol::unblock(move || file.resume(expected)).await?;
        let mut pipe = Pipeline::new(ingest);
        let streamed = stream_in(&mut pipe, body, expected).await;
        let ingest = pipe.into_ingest().await;
        match streamed {
            Ok(n) => {
                if let UploadBytes::File(f) = &mut self.file {
                    f.keep(ingest);
                }
                Ok(n)
            }
            Err(e) => {
                smol::unblock(move || ingest.rollback()).await?;
                Err(e)
            }
        }
    }
}

/// Streams a request body into `pipe`; returns how many bytes came.
async fn stream_in(
    pipe: &mut Pipeline,
    body: &mut (impl AsyncRead + Unpin),
    expected: Option<u64>,
) -> Result<u64> {
    loop {
        let mut buf = pipe.buffer(CHUNK);
        let read = read_full(body, &mut buf).await;
        // Finish the previous write before deciding anything, so an error leaves no write
        // running behind our back.
        pipe.wait().await?;
        let n = read.map_err(|e| {
            Error::BlobUploadInvalid(format!("reading the request body failed: {e}"))
        })?;
        if n == 0 {
            break;
        }
        // Only an announced length limits the ingest.
        pipe.write(buf, n).map_err(|o| {
            Error::SizeInvalid(format!(
                "body is longer than the {} bytes announced",
                o.allowed
            ))
        })?;
    }
    let received = pipe.written();
    if let Some(limit) = expected {
        if received != limit {
            return Err(Error::SizeInvalid(format!(
                "received {received} bytes of the {limit} announced (client hung up?)"
            )));
        }
    }
    pipe.flush().await?;
    Ok(received)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_save(_: String, _: String) -> std::future::Ready<Result<()>> {
        std::future::ready(Ok(()))
    }
    use crate::digest::Algorithm;
    use crate::store::{BlobStore, StoreConfig};

    #[test]
    fn a_session_asked_for_by_many_at_once_is_recovered_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap();
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
                                let file = store.create_upload("0a", Algorithm::Sha256)?;
                                Ok((name.clone(), Session::new("u".into(), 1, true, file)))
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
        let store = BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap();
        let file = store.create_upload("0a", Algorithm::Sha256).unwrap();
        let path = store.layout().upload("0a");
        let mut s = Session::new("u".into(), 1, true, file);
        s.close();
        let appended = smol::block_on(s.append(&mut &b"late"[..], Some(4), no_save));
        assert!(matches!(appended, Err(Error::BlobUploadUnknown(_))));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn an_append_that_fails_leaves_the_session_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &StoreConfig::Disk).unwrap();
        let file = store.create_upload("0a", Algorithm::Sha256).unwrap();
        let path = store.layout().upload("0a");
        let mut s = Session::new("u".into(), 1, true, file);
        smol::block_on(async {
            s.append(&mut &b"hello "[..], Some(6), no_save)
                .await
                .unwrap();
            for (body, announced) in [(&b"world!"[..], 5), (b"wor", 5)] {
                let e = s.append(&mut &body[..], Some(announced), no_save).await;
                assert!(matches!(e, Err(Error::SizeInvalid(_))), "{body:?}");
                assert_eq!(s.offset(), 6);
                assert_eq!(std::fs::read(&path).unwrap(), b"hello ");
            }
            assert_eq!(
                s.append(&mut &b"world"[..], None, no_save).await.unwrap(),
                5
            );
        });
        let d = crate::digest::Digest::sha256_of(b"hello world");
        s.file()
            .finish(&d, |_| panic!("hashed as written"))
            .unwrap();
    }
}
