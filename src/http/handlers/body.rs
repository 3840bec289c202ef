//! What a request body announces and holds: its `Content-Length`, and a whole body read under a
//! limit. Used by `uploads.rs` and `manifests.rs`; imports nothing from the other handlers.

use http_types::Request;
use smol::io::AsyncReadExt;

use crate::error::{Error, Result};

/// The request's `Content-Length`, if it sent one.
pub(super) fn content_length(req: &Request) -> Result<Option<u64>> {
    match req.header("Content-Length") {
        None => Ok(None),
        Some(v) => v.as_str().trim().parse().map(Some).map_err(|_| {
            Error::BadRequest(format!("Content-Length {:?} is not a number", v.as_str()))
        }),
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond it, before reading when the client
/// announced the length).
pub(super) async fn read_limited(req: &mut Request, limit: usize, what: &str) -> Result<Vec<u8>> {
    let too_large =
        |n: String| Error::TooLarge(format!("{what} is {n} bytes; the limit is {limit}"));
    if let Some(len) = content_length(req)? {
        if len > limit as u64 {
            return Err(too_large(len.to_string()));
        }
    }
    let mut buf = Vec::new();
    let mut body = req.take_body().take(limit as u64 + 1);
    body.read_to_end(&mut buf)
        .await
        .map_err(|e| Error::BadRequest(format!("reading the {what} failed: {e}")))?;
    if buf.len() > limit {
        return Err(too_large(format!("more than {limit}")));
    }
    if let Some(len) = content_length(req)? {
        if buf.len() as u64 != len {
            return Err(Error::SizeInvalid(format!(
                "received {} bytes of the {len} announced",
                buf.len()
            )));
        }
    }
    Ok(buf)
}
