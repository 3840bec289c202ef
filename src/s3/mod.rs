//! An S3 client: the few calls atoll's object-store engine makes (objects, listings,
//! multipart uploads, presigned GETs), against any S3-compatible server (Garage, Ceph's RGW,
//! MinIO, Swift's S3 API, a cloud bucket).
//!
//! Requests are signed by rusty-s3 (SigV4 in the query string, no I/O of its own) and sent over
//! `net`'s pooled keep-alive connections, TLS verified against the system's CA store or
//! `SSL_CERT_FILE`; answers are read with quick-xml (`xml.rs`). A server that is busy or
//! briefly down (500, 502, 503, 504, a refused or cut connection) is asked again with backoff;
//! what still fails is [`Error::Unavailable`], a 503 whose message names the store.
//! `config.rs` checks the settings; `multipart.rs` holds the multipart uploads and the
//! part-by-part copy.
//!
//! Every call is async; the store's engine (`store/object.rs`) runs them from blocking threads
//! with `smol::block_on`, as it runs everything else.

pub mod config;
mod multipart;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use http_types::{Method, Request, Response, StatusCode, Url};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use smol::io::AsyncReadExt;

pub use config::{Addressing, S3Config, S3Flags};

use crate::error::{Error, Result};
use crate::net::Http;

/// How long a signed request stays valid: long enough for a slow part upload to start.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// The deadline for an answer's head, body sent included (a part is 16 MiB: 120 s allows a
/// link of ~140 kB/s).
const HEAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at a request the server answers with a retryable error.
const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; four times longer for each one after it.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Error answers, listings and small objects are read whole up to this size.
const SMALL_BODY: usize = 8 << 20;

/// An object's size and last change, from a HEAD or a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
}

/// A multipart upload the server holds, unfinished.
#[derive(Clone, Debug)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    /// Seconds since the epoch.
    pub initiated: i64,
}

/// A connection to one bucket (and prefix) of an S3-compatible server.
pub struct S3 {
    pub(super) bucket: Bucket,
    pub(super) credentials: Credentials,
    pub(super) prefix: String,
    http: Arc<Http>,
    /// `s3://bucket/prefix at endpoint`, for messages.
    label: String,
}

/// A request body that can be built again for a retry without copying the bytes (made from a
/// `Vec` without copying it either: a part is 16 MiB).
#[derive(Clone)]
pub struct Bytes(Arc<Vec<u8>>);

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(Arc::new(v))
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl S3 {
    pub fn new(config: &S3Config, http: Arc<Http>) -> Result<S3> {
        let style = match config.addressing {
            Addressing::Path => UrlStyle::Path,
            Addressing::VirtualHost => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| Error::Config(format!("--blob-store {config}: {e}")))?;
        Ok(S3 {
            bucket,
            credentials: Credentials::new(&config.access_key, &config.secret_key),
            prefix: config.prefix.clone(),
            http,
            label: config.to_string(),
        })
    }

    /// `s3://bucket/prefix at endpoint`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub(super) fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Checks that the bucket is there and the keys may read it (startup, readiness).
    pub async fn check_bucket(&self) -> Result<()> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(SIGNED_FOR);
        let res = self.send(Method::Head, url, None, &[]).await?;
        match res.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NotFound => Err(self.unavailable("the bucket does not exist")),
            StatusCode::Forbidden => Err(self.unavailable(
                "the keys are refused (403): check the access key, the secret and the region",
            )),
            s => Err(self.unavailable(&format!("checking the bucket: {}", s as u16))),
        }
    }

    /// An object's size and time, or `None` if there is none.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let full = self.full(key);
        let url = self
            .bucket
            .head_object(Some(&self.credentials), &full)
            .sign(SIGNED_FOR);
        let res = self.send(Method::Head, url, None, &[]).await?;
        match res.status() {
            StatusCode::NotFound => Ok(None),
            s if s.is_success() => {
                let size = header(&res, "Content-Length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| self.unavailable(&format!("HEAD {key}: no Content-Length")))?;
                let modified = header(&res, "Last-Modified")
                    .and_then(http_date)
                    .unwrap_or(0);
                Ok(Some(ObjectInfo {
                    key: key.to_owned(),
                    size,
                    modified,
                }))
            }
            s => Err(self.unavailable(&format!("HEAD {key}: {}", s as u16))),
        }
    }

    /// An object's bytes from `start`, `len` of them (all, if `None`), as a streamed answer
    /// whose body the caller reads; `None` if there is no such object.
    pub async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<Response>> {
        let full = self.full(key);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &full)
            .sign(SIGNED_FOR);
        let range = range.map(|(start, len)| format!("bytes={start}-{}", start + len - 1));
        let headers: Vec<(&str, &str)> = range.iter().map(|r| ("Range", r.as_str())).collect();
        let mut res = self.send(Method::Get, url, None, &headers).await?;
        match res.status() {
            StatusCode::NotFound => {
                discard(res).await;
                Ok(None)
            }
            StatusCode::PartialContent if range.is_some() => Ok(Some(res)),
            // A server that ignored the Range would hand the client the wrong bytes.
            StatusCode::Ok if range.is_none() => Ok(Some(res)),
            StatusCode::Ok => Err(self.unavailable(&format!("GET {key}: the Range was ignored"))),
            _ => Err(self.failed(&format!("GET {key}"), &mut res).await),
        }
    }

    /// A whole small object (a manifest), or `None` if there is none.
    pub async fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(mut res) = self.get(key, None).await? else {
            return Ok(None);
        };
        read_body(&mut res, usize::MAX)
            .await
            .map(Some)
            .map_err(|e| self.unavailable(&format!("GET {key}: {e}")))
    }

    /// Writes an object whole.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let full = self.full(key);
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &full)
            .sign(SIGNED_FOR);
        let mut res = self.send(Method::Put, url, Some(bytes), &[]).await?;
        if res.status().is_success() {
            discard(res).await;
            return Ok(());
        }
        Err(self.failed(&format!("PUT {key}"), &mut res).await)
    }

    /// Copies an object on the server (no byte passes through atoll). At most 5 GiB, S3's
    /// limit for one copy.
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let full = self.full(to);
        let mut action = self.bucket.put_object(Some(&self.credentials), &full);
        let source = format!("/{}/{}", self.bucket.name(), encode_key(&self.full(from)));
        action
            .headers_mut()
            .insert("x-amz-copy-source", source.clone());
        let url = action.sign(SIGNED_FOR);
        let headers = [("x-amz-copy-source", source.as_str())];
        let mut res = self.send(Method::Put, url, None, &headers).await?;
        // A copy can fail after its 200 has been sent: the error is then in the body.
        let status = res.status();
        let body = read_body(&mut res, SMALL_BODY).await.unwrap_or_default();
        if status.is_success() && xml::error(&body).is_none() {
            return Ok(());
        }
        Err(self.refused(&format!("copying {from} to {to}"), status, &body))
    }

    /// Deletes an object; deleting one that is not there is not an error (S3 answers 204).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full(key);
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), &full)
            .sign(SIGNED_FOR);
        let mut res = self.send(Method::Delete, url, None, &[]).await?;
        if res.status().is_success() || res.status() == StatusCode::NotFound {
            discard(res).await;
            return Ok(());
        }
        Err(self.failed(&format!("DELETE {key}"), &mut res).await)
    }

    /// Every object under `under` (relative to the prefix), a page at a time.
    pub async fn list(&self, under: &str) -> Result<Vec<ObjectInfo>> {
        let mut found = Vec::new();
        self.list_each(under, &mut |o| found.push(o)).await?;
        Ok(found)
    }

    /// Every object under `under`, handed to `each` a page at a time as the pages come: a
    /// listing of a million objects is held only by whoever needs it, in the form it needs.
    pub async fn list_each(&self, under: &str, each: &mut dyn FnMut(ObjectInfo)) -> Result<()> {
        let full = self.full(under);
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", full.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let url = self.sign(rusty_s3::Method::Get, None, &query);
            let body = self.get_xml(url, "listing the bucket").await?;
            let doc = xml::Doc::parse(&body, Some("ListBucketResult/Contents"))
                .map_err(|e| self.unavailable(&format!("listing the bucket: {e}")))?;
            for r in doc.records() {
                let (Some(key), Some(size)) = (r.get("Key"), r.get("Size")) else {
                    continue;
                };
                let Some(key) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                each(ObjectInfo {
                    key: key.to_owned(),
                    size: size.parse().unwrap_or(0),
                    modified: r.get("LastModified").and_then(iso_date).unwrap_or(0),
                });
            }
            token = doc
                .get("ListBucketResult/NextContinuationToken")
                .filter(|_| doc.get("ListBucketResult/IsTruncated") == Some("true"))
                .map(str::to_owned);
            if token.is_none() {
                return Ok(());
            }
        }
    }

    /// A URL anyone may GET the object with for `valid` (a redirected blob download).
    pub fn presigned_get(&self, key: &str, valid: Duration) -> Url {
        let full = self.full(key);
        self.bucket
            .get_object(Some(&self.credentials), &full)
            .sign(valid)
    }

    /// Signs a request of the bucket (`object: None`) or of an object that rusty-s3 has no
    /// action for (or only behind its own XML parser's feature).
    pub(super) fn sign(
        &self,
        method: rusty_s3::Method,
        object: Option<&str>,
        query: &[(&str, &str)],
    ) -> Url {
        let url = match object {
            Some(key) => self.bucket.object_url(key),
            None => self.bucket.base_url().clone(),
        };
        let mut sorted = query.to_vec();
        sorted.sort();
        rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            url,
            self.credentials.key(),
            self.credentials.secret(),
            None,
            self.bucket.region(),
            SIGNED_FOR.as_secs(),
            // rusty-s3 merges these with its own parameters assuming both are sorted.
            sorted.iter().copied(),
            std::iter::empty(),
        )
    }

    /// GETs an XML answer whole.
    pub(super) async fn get_xml(&self, url: Url, what: &str) -> Result<Vec<u8>> {
        let mut res = self.send(Method::Get, url, None, &[]).await?;
        let status = res.status();
        let body = read_body(&mut res, SMALL_BODY)
            .await
            .map_err(|e| self.unavailable(&format!("{what}: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.refused(what, status, &body))
    }

    /// Sends a request, again with backoff while the server is busy or unreachable; returns
    /// the first answer that is not one of those (or the last one).
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let make = || {
            let mut req = Request::new(method, url.clone());
            for (name, value) in headers {
                req.insert_header(*name, *value);
            }
            match &body {
                Some(b) => {
                    let reader = smol::io::Cursor::new(b.clone());
                    req.set_body(http_types::Body::from_reader(reader, Some(b.0.len())));
                }
                // S3 wants a length on a PUT or POST, even an empty one.
                None if matches!(method, Method::Put | Method::Post) => {
                    req.insert_header("Content-Length", "0");
                }
                None => {}
            }
            req
        };
        let mut attempt = 1;
        loop {
            let outcome = self.http.exchange(make, HEAD_TIMEOUT).await;
            let status = outcome.as_ref().ok().map(|r| r.status() as u16);
            let Some(wait) = backoff(status, attempt) else {
                return outcome.map_err(|e| self.unavailable(&e));
            };
            if let Ok(res) = outcome {
                log::debug!(
                    "{}: answered {}; asking again",
                    self.label,
                    res.status() as u16
                );
                discard(res).await;
            }
            smol::Timer::after(wait).await;
            attempt += 1;
        }
    }

    /// The error of an answer that refused a request, with what its body says.
    pub(super) async fn failed(&self, what: &str, res: &mut Response) -> Error {
        let status = res.status();
        let body = read_body(res, SMALL_BODY).await.unwrap_or_default();
        self.refused(what, status, &body)
    }

    pub(super) fn refused(&self, what: &str, status: StatusCode, body: &[u8]) -> Error {
        let detail = match xml::error(body) {
            Some((code, message)) if message.is_empty() => code,
            Some((code, message)) => format!("{code}: {message}"),
            None => format!("{}", status as u16),
        };
        self.unavailable(&format!("{what}: {detail}"))
    }

    pub(super) fn unavailable(&self, what: &str) -> Error {
        Error::Unavailable(format!("object store {}: {what}", self.label))
    }
}

/// How long to wait before asking again after attempt `attempt` (from 1) answered `status`
/// (`None`: no answer at all, a refused or cut connection); `None` when the answer stands: it
/// is not a busy or briefly-down server's, or the attempts are spent.
fn backoff(status: Option<u16>, attempt: u32) -> Option<Duration> {
    let busy = match status {
        None => true,
        // 503 is also S3's SlowDown; 500 and 504 come from a store's overloaded gateway.
        Some(s) => matches!(s, 500 | 502 | 503 | 504),
    };
    (busy && attempt < ATTEMPTS).then(|| FIRST_BACKOFF * 4u32.pow(attempt - 1))
}

pub(super) fn header<'r>(res: &'r Response, name: &str) -> Option<&'r str> {
    res.header(name).map(|v| v.last().as_str())
}

/// Reads a body whole, up to `limit` bytes.
pub(super) async fn read_body(
    res: &mut Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut body = res.take_body().take((limit as u64).saturating_add(1));
    body.read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    if buf.len() > limit {
        return Err(format!("the answer is over {limit} bytes"));
    }
    Ok(buf)
}

/// Reads an answer not wanted to its end, so its connection is reused.
pub(super) async fn discard(mut res: Response) {
    let _ = read_body(&mut res, 64 * 1024).await;
}

/// A key as it goes in `x-amz-copy-source`: percent-encoded as a URL path (RFC 3986's
/// unreserved characters and `/` kept; a space is `%20`, not a form's `+`).
pub(super) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Seconds since the epoch of an ISO 8601 time (`2026-12-07T10:00:00.000Z`).
pub(super) fn iso_date(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Seconds since the epoch of an HTTP date (`Mon, 07 Dec 2026 10:00:00 GMT`).
fn http_date(s: &str) -> Option<i64> {
    jiff::fmt::rfc2822::parse(s)
        .ok()
        .map(|z| z.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_listings_and_heads() {
        assert_eq!(iso_date("1970-01-01T00:01:40.000Z"), Some(100));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:01:40 GMT"), Some(100));
        assert_eq!(iso_date("yesterday"), None);
    }

    #[test]
    fn a_busy_or_unreachable_store_is_asked_again_with_growing_waits_and_no_more() {
        let waits: Vec<_> = (1..=ATTEMPTS).map(|a| backoff(Some(503), a)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(waits, [ms(50), ms(200), ms(800), ms(3200), None]);
        assert_eq!(backoff(None, 1), ms(50), "a refused connection");
        for s in [500, 502, 504] {
            assert!(backoff(Some(s), 1).is_some(), "{s}");
        }
        for s in [200, 206, 403, 404, 409, 501] {
            assert_eq!(backoff(Some(s), 1), None, "{s} stands");
        }
    }

    #[test]
    fn a_copy_source_keeps_its_slashes_and_encodes_the_rest() {
        assert_eq!(encode_key("p q/blobs/a+b~é"), "p%20q/blobs/a%2Bb~%C3%A9");
    }
}
