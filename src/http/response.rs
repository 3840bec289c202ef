//! Building responses: the `{"errors":[...]}` envelope (the only place it is written), the
//! locations of blobs, uploads and manifests, and `Link` headers for paginated listings.

use http_types::{Body, Response, StatusCode};
use serde_json::json;

use crate::digest::Digest;
use crate::error::Error;
use crate::range::upload_range_header;
use crate::reference::RepoName;

pub const API_VERSION: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");
pub const DOCKER_CONTENT_DIGEST: &str = "Docker-Content-Digest";
pub const JSON: &str = "application/json";

/// The distribution spec's error envelope for `e`, with the headers that go with its status.
pub fn error(e: &Error) -> Response {
    let status = StatusCode::try_from(e.status()).unwrap_or(StatusCode::InternalServerError);
    let mut res = Response::new(status);
    let detail = match e {
        Error::BlobUnknown(d) | Error::ManifestBlobUnknown(d) => json!({ "digest": d }),
        Error::BlobUploadUnknown(id) => json!({ "upload": id }),
        Error::ManifestUnknown(r) => json!({ "reference": r }),
        Error::NameUnknown(n) => json!({ "name": n }),
        _ => json!({}),
    };
    let body =
        json!({ "errors": [{ "code": e.code(), "message": e.to_string(), "detail": detail }] });
    match e {
        Error::RangeNotSatisfiable { size } => {
            res.insert_header("Content-Range", format!("bytes */{size}"));
        }
        Error::UploadOutOfOrder { offset, .. } => {
            res.insert_header("Range", upload_range_header(*offset));
        }
        Error::TooManyRequests(_) => {
            res.insert_header("Retry-After", "60");
        }
        _ => {}
    }
    res.insert_header("Content-Type", JSON);
    res.set_body(body.to_string());
    res
}

/// A JSON body with an explicit content type.
pub fn json_body(status: StatusCode, content_type: &str, value: &serde_json::Value) -> Response {
    let mut res = Response::new(status);
    res.insert_header("Content-Type", content_type);
    res.set_body(value.to_string());
    res
}

/// A response with no body, sending `Content-Length: 0`.
pub fn empty(status: StatusCode) -> Response {
    let mut res = Response::new(status);
    res.set_body(Body::from_bytes(Vec::new()));
    res
}

/// A body of a known length whose bytes are not sent (HEAD): async-h1 writes `Content-Length`
/// from it and skips the body for HEAD requests.
pub fn head_body(len: u64) -> Body {
    sized_reader(smol::io::empty(), len)
}

/// A streamed body of `len` bytes. On a 32-bit target a length beyond `usize` cannot be
/// announced, so such a body goes out chunked instead.
pub fn sized_reader(
    reader: impl smol::io::AsyncBufRead + Unpin + Send + Sync + 'static,
    len: u64,
) -> Body {
    Body::from_reader(reader, usize::try_from(len).ok())
}

pub fn blob_location(name: &RepoName, digest: &Digest) -> String {
    format!("/v2/{name}/blobs/{digest}")
}

pub fn upload_location(name: &RepoName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

pub fn manifest_location(name: &RepoName, digest: &str) -> String {
    format!("/v2/{name}/manifests/{digest}")
}

/// RFC 8288 `Link` to the next page of a listing at `path`.
pub fn next_link(path: &str, n: u32, last: &str) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_escape_the_last_item() {
        assert_eq!(
            next_link("/v2/_catalog", 2, "a/b"),
            "</v2/_catalog?n=2&last=a%2Fb>; rel=\"next\""
        );
    }
}
