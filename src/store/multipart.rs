//! An upload straight into the object store: the client's bytes go to the bucket as the parts
//! of an S3 multipart upload while they arrive, hashed on the way, with no local copy of the
//! blob; memory holds at most two parts, one on its way to the bucket while the next fills
//! ([`PART`] bytes each).
//!
//! S3 takes parts of at least [`MIN_PART`] bytes (but the last). What a request leaves below
//! that, its tail, is written to the bucket as an object of its own (`uploads/<id>/tail-<len>-<nonce>`:
//! a new key each time, so two requests racing on one upload from two nodes never write one
//! object; the state saved last names its own)
//! and begins the next request's first part; the last request's tail ends the upload. The
//! upload's state (its multipart id, the parts sent, the tail's key, the running hash) is a
//! small JSON text the registry keeps in the upload's index row after each request, so a
//! restart, or another node, resumes from it; a request that fails leaves the state as it was
//! (the parts it sent are overwritten or dropped, its tail is not named).
//!
//! Finishing checks the hash, then makes the blob without reading it back: a blob smaller than
//! a part is PUT whole from memory; a larger one is completed at `uploads/<id>/data` and copied
//! on the server to the blob's key. Then everything under `uploads/<id>/` goes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol::io::{AsyncRead, AsyncReadExt};

use super::object::blob_key;
use super::Staged;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::s3::S3;

/// S3's smallest part, but for the last.
const MIN_PART: usize = 5 << 20;
/// The part size while a body streams in.
const PART: usize = 16 << 20;
/// Bytes read from the client per step.
const CHUNK: usize = 1 << 20;
/// S3 copies objects up to this size in one request; larger ones go part by part.
const MAX_COPY: u64 = 5 << 30;

/// A part on its way to the bucket: its number, ETag and length once it is there.
type InFlight = smol::Task<Result<(u16, String, u64)>>;

/// An upload in the bucket, as its session holds it.
#[derive(Clone)]
pub struct Multipart {
    s3: Arc<S3>,
    id: String,
    state: State,
    /// The tail's bytes (in the bucket too, for a resumable upload).
    tail: Vec<u8>,
    hasher: Hasher,
}

/// What the index keeps of an upload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct State {
    /// The S3 multipart upload, once a first part was sent.
    upload: Option<String>,
    /// Number and ETag of each part sent, in order.
    parts: Vec<(u16, String)>,
    /// Bytes in the parts.
    sent: u64,
    /// The object holding the tail, if there is one.
    tail: Option<String>,
    /// The running hash of every byte so far (`Hasher::save`).
    hash: String,
}

impl Multipart {
    pub fn new(s3: Arc<S3>, id: &str, algorithm: Algorithm) -> Multipart {
        let hasher = algorithm.hasher();
        Multipart {
            s3,
            id: id.to_owned(),
            state: State {
                hash: hasher.save(),
                ..State::default()
            },
            tail: Vec::new(),
            hasher,
        }
    }

    /// The upload as its index row describes it (after a restart): its tail fetched again.
    /// Blocking.
    pub fn recover(s3: Arc<S3>, id: &str, saved: &str) -> Result<Multipart> {
        let corrupt = |why: &str| Error::Corrupt(format!("upload {id}: its saved state {why}"));
        let state: State = serde_json::from_str(saved).map_err(|_| corrupt("is not JSON"))?;
        let hasher = Hasher::restore(&state.hash).ok_or_else(|| corrupt("has no hash"))?;
        let tail = match &state.tail {
            Some(key) => smol::block_on(s3.get_small(key))?
                .ok_or_else(|| corrupt("names a tail object that is gone"))?,
            None => Vec::new(),
        };
        Ok(Multipart {
            s3,
            id: id.to_owned(),
            state,
            tail,
            hasher,
        })
    }

    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.state.sent + self.tail.len() as u64
    }

    /// The state to keep in the index row.
    pub fn saved(&self) -> String {
        serde_json::to_string(&self.state).expect("the state serializes")
    }

    fn data_key(&self) -> String {
        format!("uploads/{}/data", self.id)
    }

    /// The upload with a request body appended, and how many bytes that was; on any error,
    /// the upload stays as it was (the caller keeps the new one once its state is saved).
    /// `expected` is the length the client announced. A `resumable` upload stores its tail in
    /// the bucket; a one-request upload keeps it in memory until it finishes.
    pub async fn appended(
        &self,
        body: &mut (impl AsyncRead + Unpin),
        expected: Option<u64>,
        resumable: bool,
    ) -> Result<(Multipart, u64)> {
        let mut next = self.clone();
        let received = next.stream_in(body, expected).await?;
        if next.tail.len() >= MIN_PART {
            next.send_part().await?;
        }
        next.state.hash = next.hasher.save();
        next.state.tail = None;
        if resumable && !next.tail.is_empty() {
            let key = format!(
                "uploads/{}/tail-{}-{}",
                next.id,
                next.offset(),
                &crate::ids::new_id()[..12]
            );
            next.s3.put(&key, next.tail.clone().into()).await?;
            next.state.tail = Some(key);
        }
        Ok((next, received))
    }

    async fn stream_in(
        &mut self,
        body: &mut (impl AsyncRead + Unpin),
        expected: Option<u64>,
    ) -> Result<u64> {
        let mut received = 0u64;
        let mut buf = vec![0u8; CHUNK];
        // At most one part on its way (dropped with this future on an error: cancelled).
        let mut flying: Option<InFlight> = None;
        loop {
            let n = body.read(&mut buf).await.map_err(|e| {
                Error::BlobUploadInvalid(format!("reading the request body failed: {e}"))
            })?;
            if n == 0 {
                break;
            }
            if let Some(limit) = expected.filter(|l| received + n as u64 > *l) {
                return Err(Error::SizeInvalid(format!(
                    "body is longer than the {limit} bytes announced"
                )));
            }
            self.hasher.update(&buf[..n]);
            if self.tail.capacity() < PART {
                // Once, to its full size: growing by doubling would reach twice a part.
                self.tail.reserve_exact(PART + CHUNK - self.tail.len());
            }
            self.tail.extend_from_slice(&buf[..n]);
            received += n as u64;
            if self.tail.len() >= PART {
                // This part goes out while the next one fills: the client's bytes keep coming.
                let next = self.start_part(flying.is_some()).await?;
                if let Some(before) = flying.replace(next) {
                    self.landed(before.await?);
                }
            }
        }
        if let Some(limit) = expected.filter(|l| received != *l) {
            return Err(Error::SizeInvalid(format!(
                "received {received} bytes of the {limit} announced (client hung up?)"
            )));
        }
        if let Some(last) = flying {
            self.landed(last.await?);
        }
        Ok(received)
    }

    /// Sends the tail as the next part, and waits for it.
    async fn send_part(&mut self) -> Result<()> {
        let part = self.start_part(false).await?.await?;
        self.landed(part);
        Ok(())
    }

    /// Starts sending the tail as the next part (the one after the part in flight, if
    /// `behind` one); the task answers with the part's number, ETag and length.
    async fn start_part(&mut self, behind: bool) -> Result<InFlight> {
        let key = self.data_key();
        let upload = match &self.state.upload {
            Some(u) => u.clone(),
            None => {
                let u = self.s3.create_upload(&key).await?;
                self.state.upload = Some(u.clone());
                u
            }
        };
        let number = u16::try_from(self.state.parts.len() + 1 + usize::from(behind))
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| Error::TooLarge("an upload of more than 10,000 parts".into()))?;
        let bytes = std::mem::take(&mut self.tail);
        let len = bytes.len() as u64;
        let s3 = self.s3.clone();
        Ok(smol::spawn(async move {
            let etag = s3.upload_part(&key, &upload, number, bytes.into()).await?;
            Ok((number, etag, len))
        }))
    }

    /// Records a part the bucket has.
    fn landed(&mut self, (number, etag, len): (u16, String, u64)) {
        self.state.parts.push((number, etag));
        self.state.sent += len;
    }

    /// The upload as a blob of `expected`, if its bytes hash to it (else the error `mismatch`
    /// makes): in the bucket at the blob's key, nothing read back (but for a digest in another
    /// algorithm than the one hashed as they came). Blocking.
    pub fn finish(
        &self,
        expected: &Digest,
        mismatch: impl FnOnce(&Digest) -> Error,
    ) -> Result<Staged> {
        smol::block_on(async {
            let mut done = self.clone();
            let target = blob_key(expected);
            if done.state.parts.is_empty() {
                let digest = match expected.algorithm() == done.hasher.algorithm() {
                    true => done.hasher.clone().finish(),
                    false => Digest::of(expected.algorithm(), &done.tail),
                };
                if &digest != expected {
                    return Err(mismatch(&digest));
                }
                done.s3.put(&target, done.tail.into()).await?;
                return Ok(Staged::in_engine());
            }
            if expected.algorithm() == done.hasher.algorithm() {
                let digest = done.hasher.clone().finish();
                if &digest != expected {
                    return Err(mismatch(&digest));
                }
            }
            if !done.tail.is_empty() {
                done.send_part().await?;
            }
            let data = done.data_key();
            let upload = done.state.upload.clone().expect("parts were sent");
            done.s3
                .complete_upload(&data, &upload, &done.state.parts)
                .await?;
            if expected.algorithm() != done.hasher.algorithm() {
                let digest = done.hash_object(&data, expected.algorithm()).await?;
                if &digest != expected {
                    return Err(mismatch(&digest));
                }
            }
            // Over whatever is at the key, as a rename would be: the bytes are verified.
            match done.state.sent <= MAX_COPY {
                true => done.s3.copy(&data, &target).await?,
                false => {
                    done.s3
                        .copy_in_parts(&data, &target, done.state.sent)
                        .await?
                }
            }
            Ok(Staged::in_engine())
        })
    }

    /// Hashes an object of the bucket in `algorithm`, reading it through.
    async fn hash_object(&self, key: &str, algorithm: Algorithm) -> Result<Digest> {
        let mut res =
            self.s3.get(key, None).await?.ok_or_else(|| {
                Error::Corrupt(format!("{key} vanished while the upload finished"))
            })?;
        let mut body = res.take_body();
        let mut hasher = algorithm.hasher();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = body
                .read(&mut buf)
                .await
                .map_err(|e| Error::Unavailable(format!("reading {key} back: {e}")))?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buf[..n]);
        }
    }

    /// Drops everything the upload put in the bucket: its unfinished multipart upload, its
    /// tails, its completed data. Blocking.
    pub fn remove(&self) -> Result<()> {
        smol::block_on(remove_upload(
            &self.s3,
            &self.id,
            self.state.upload.as_deref(),
        ))
    }
}

/// The multipart upload a saved state names, if any.
pub(super) fn upload_named(saved: &str) -> Option<String> {
    serde_json::from_str::<State>(saved).ok()?.upload
}

/// Removes an upload's objects and aborts its multipart upload (`upload`, if known).
pub async fn remove_upload(s3: &S3, id: &str, upload: Option<&str>) -> Result<()> {
    let data = format!("uploads/{id}/data");
    if let Some(u) = upload {
        s3.abort_upload(&data, u).await?;
    }
    for o in s3.list(&format!("uploads/{id}/")).await? {
        s3.delete(&o.key).await?;
    }
    Ok(())
}

/// Removes from the bucket what no live upload owns, if it is older than `before` (Unix
/// seconds): objects under `uploads/` of uploads with no row, and unfinished multipart uploads
/// that no row's state names (a crash, a request that failed after starting one). `live` maps
/// each live upload's id to its saved state. Returns how many uploads lost something.
pub async fn purge(s3: &S3, live: &HashMap<&str, Option<&str>>, before: i64) -> Result<u64> {
    let id_of = |key: &str| -> Option<String> {
        Some(key.strip_prefix("uploads/")?.split('/').next()?.to_owned())
    };
    let mut touched = HashSet::new();
    for o in s3.list("uploads/").await? {
        let Some(id) = id_of(&o.key) else { continue };
        if live.contains_key(id.as_str()) || o.modified >= before {
            continue;
        }
        s3.delete(&o.key).await?;
        touched.insert(id);
    }
    for u in s3.pending_uploads("uploads/").await? {
        let Some(id) = id_of(&u.key) else { continue };
        let named = live
            .get(id.as_str())
            .copied()
            .flatten()
            .and_then(upload_named)
            .is_some_and(|current| current == u.upload_id);
        if named || u.initiated >= before {
            continue;
        }
        s3.abort_upload(&u.key, &u.upload_id).await?;
        touched.insert(id);
    }
    Ok(touched.len() as u64)
}
