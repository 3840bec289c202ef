//! The object-store engine: blobs as objects of an S3 bucket, under `PREFIX/blobs/<algorithm>/
//! <first two hex>/<hex>` (the disk's layout, so a bucket reads like a data directory).
//!
//! A staged, verified file is sent before its index transaction: in one PUT when small, else
//! as a multipart upload of [`PART`]-byte parts read from the file (memory: one part), which
//! the bucket makes visible whole at its completion. An object already at that key is
//! overwritten with the verified bytes, as a rename replaces a file on the disk: pushing a blob
//! again repairs a damaged copy. The commit inside the transaction checks that the object is
//! there. Small blobs that are read (manifests, configs) are kept in memory,
//! [`CACHE_BYTES`] at most, so a manifest GET does not cost a round trip to the bucket:
//! content-addressed bytes never go stale.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_types::Url;

use super::engine::{BlobFile, Deleter, Engine, Opened, Remote};
use super::{paths, Staged};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::s3::S3;

/// Blobs up to this size go in one PUT; larger ones in parts of this size.
const PART: usize = 16 << 20;
/// Blobs up to this size are kept in memory once read.
const CACHE_ONE: usize = 256 << 10;
/// The most the small-blob cache holds.
const CACHE_BYTES: usize = 32 << 20;

pub struct Object {
    s3: Arc<S3>,
    small: Mutex<Small>,
}

/// Small blobs by digest, the oldest dropped first.
#[derive(Default)]
struct Small {
    bytes: HashMap<Digest, Arc<Vec<u8>>>,
    order: VecDeque<Digest>,
    held: usize,
}

impl Object {
    pub fn new(s3: Arc<S3>) -> Object {
        Object {
            s3,
            small: Mutex::default(),
        }
    }

    fn cached(&self, digest: &Digest) -> Option<Arc<Vec<u8>>> {
        self.small_lock().bytes.get(digest).cloned()
    }

    fn remember(&self, digest: &Digest, bytes: &[u8]) {
        if bytes.len() > CACHE_ONE {
            return;
        }
        let mut small = self.small_lock();
        if small.bytes.contains_key(digest) {
            return;
        }
        while small.held + bytes.len() > CACHE_BYTES {
            let Some(old) = small.order.pop_front() else {
                break;
            };
            if let Some(b) = small.bytes.remove(&old) {
                small.held -= b.len();
            }
        }
        small.held += bytes.len();
        small.order.push_back(digest.clone());
        small.bytes.insert(digest.clone(), Arc::new(bytes.to_vec()));
    }

    /// Drops a blob's bytes from the cache (deleted, set aside, or written again).
    fn forget(&self, digest: &Digest) {
        let mut small = self.small_lock();
        if let Some(b) = small.bytes.remove(digest) {
            small.held -= b.len();
        }
    }

    fn small_lock(&self) -> std::sync::MutexGuard<'_, Small> {
        self.small.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a file's bytes to `key`: one PUT, or a multipart upload aborted if it fails.
    async fn upload(
        &self,
        key: &str,
        file: &mut File,
        len: u64,
        path: &std::path::Path,
    ) -> Result<()> {
        if len <= PART as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).at("reading", path)?;
            return self.s3.put(key, bytes.into()).await;
        }
        let id = self.s3.create_upload(key).await?;
        let sent = async {
            let mut parts = Vec::new();
            for number in 1.. {
                // A fresh buffer per part, moved into the request: one part in memory at a time.
                let mut part = vec![0u8; PART];
                let n = read_full(file, &mut part).at("reading", path)?;
                if n == 0 {
                    break;
                }
                part.truncate(n);
                let etag = self.s3.upload_part(key, &id, number, part.into()).await?;
                parts.push((number, etag));
            }
            self.s3.complete_upload(key, &id, &parts).await
        }
        .await;
        if sent.is_err() {
            let _ = self.s3.abort_upload(key, &id).await;
        }
        sent
    }
}

impl Engine for Object {
    fn describe(&self) -> String {
        self.s3.label().to_owned()
    }

    fn check(&self) -> Result<()> {
        smol::block_on(self.s3.check_bucket())
    }

    fn stat(&self, digest: &Digest) -> Result<Option<BlobFile>> {
        let info = smol::block_on(self.s3.head(&blob_key(digest)))?;
        Ok(info.map(|i| BlobFile {
            digest: digest.clone(),
            size: i.size,
            modified: i.modified,
        }))
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        if let Some(bytes) = self.cached(digest) {
            return Ok(bytes.as_ref().clone());
        }
        let key = blob_key(digest);
        let bytes = smol::block_on(self.s3.get_small(&key))?.ok_or_else(|| {
            Error::Corrupt(format!(
                "blob {digest} is in the index but not in {}; run atoll --verify",
                self.s3.label()
            ))
        })?;
        // Checked before it is kept: what the cache holds is right, and a hit costs no hash.
        let bytes = super::checked(digest, bytes)?;
        self.remember(digest, &bytes);
        Ok(bytes)
    }

    fn open(&self, digest: &Digest) -> Result<Opened> {
        Ok(Opened::Remote(Remote {
            s3: self.s3.clone(),
            key: blob_key(digest),
        }))
    }

    fn send(&self, staged: &Staged, digest: &Digest) -> Result<()> {
        if staged.in_engine {
            return Ok(()); // an upload that went straight to the bucket
        }
        let path = staged.path();
        let mut file = File::open(path).at("opening", path)?;
        let len = file.metadata().at("reading", path)?.len();
        smol::block_on(self.upload(&blob_key(digest), &mut file, len, path))
    }

    fn commit(&self, staged: Staged, digest: &Digest) -> Result<()> {
        drop(staged); // its bytes are in the bucket: the local copy goes
        self.forget(digest); // bytes read before a push that repaired them
        match smol::block_on(self.s3.head(&blob_key(digest)))? {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(format!(
                "object store {}: blob {digest} was removed while it was being recorded \
                 (a garbage collection took it); push it again",
                self.s3.label()
            ))),
        }
    }

    fn list(&self, each: &mut dyn FnMut(Digest)) -> Result<()> {
        smol::block_on(self.s3.list_each("blobs/", &mut |o| {
            let mut parts = o.key.split('/').skip(1);
            let algorithm = match parts.next() {
                Some("sha256") => Algorithm::Sha256,
                Some("sha512") => Algorithm::Sha512,
                _ => return,
            };
            if let Some(d) = parts
                .nth(1)
                .and_then(|name| paths::digest_from_blob_path(algorithm, name))
            {
                each(d);
            }
        }))
    }

    fn deleter(&self) -> Box<dyn Deleter + '_> {
        Box::new(ObjectDeleter { engine: self })
    }

    fn quarantine(&self, digest: &Digest) -> Result<()> {
        self.forget(digest);
        let key = blob_key(digest);
        let aside = format!("quarantine/{}-{}", digest.algorithm().name(), digest.hex());
        smol::block_on(async {
            if self.s3.head(&key).await?.is_some() {
                self.s3.copy(&key, &aside).await?;
                self.s3.delete(&key).await?;
            }
            Ok(())
        })
    }

    fn presign(&self, digest: &Digest, valid: Duration) -> Option<Url> {
        Some(self.s3.presigned_get(&blob_key(digest), valid))
    }
}

struct ObjectDeleter<'e> {
    engine: &'e Object,
}

impl Deleter for ObjectDeleter<'_> {
    /// S3's DELETE does not say whether there was an object: a HEAD asks first.
    fn delete(&mut self, digest: &Digest) -> Result<bool> {
        let key = blob_key(digest);
        let s3 = &self.engine.s3;
        self.engine.forget(digest);
        smol::block_on(async {
            if s3.head(&key).await?.is_none() {
                return Ok(false);
            }
            s3.delete(&key).await?;
            Ok(true)
        })
    }
}

/// A blob's key in the bucket.
pub(super) fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("blobs/{}/{}/{hex}", digest.algorithm().name(), &hex[..2])
}

/// Reads until `buf` is full or the file ends; returns how many bytes came.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
