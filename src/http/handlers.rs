//! One function per [`Endpoint`]: read what the request carries, call the registry (off the
//! executor), shape the response. Errors are returned, never answered here: `dispatch`'s caller
//! turns every one into the spec's envelope in one place.

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use http_types::{Request, Response, StatusCode};
use serde_json::{json, Value};
use smol::io::AsyncReadExt;

use super::app::App;
use super::direct::{self, Direct};
use super::file_body::FileBody;
use super::proxied;
use super::response::{self, DOCKER_CONTENT_DIGEST, JSON};
use super::route::{Endpoint, Mount, Page};
use crate::auth::{Identity, TOKEN_TTL};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::range::{parse_content_range, parse_range, upload_range_header, RangeRequest};
use crate::reference::{Reference, RepoName, Tag};
use crate::registry::{MountOutcome, Registry};

/// Runs `f` on a blocking thread with the registry.
async fn blocking<T: Send + 'static>(
    reg: &Arc<Registry>,
    f: impl FnOnce(&Registry) -> Result<T> + Send + 'static,
) -> Result<T> {
    let reg = reg.clone();
    smol::unblock(move || f(&reg)).await
}

/// Answers one parsed request from `who` (already allowed to make it).
pub async fn dispatch(
    app: &App,
    req: &mut Request,
    endpoint: Endpoint,
    who: &Identity,
) -> Result<Response> {
    let (reg, policy) = (&app.registry, &app.policy);
    if endpoint.is_write() && policy.read_only {
        return Err(Error::Unsupported(
            "this registry is read-only (--read-only): pushes and deletes are refused".into(),
        ));
    }
    if endpoint.is_delete() && policy.no_delete {
        return Err(Error::Unsupported(
            "deletes are disabled on this registry (--no-delete)".into(),
        ));
    }
    match endpoint {
        Endpoint::ApiBase => Ok(response::json_body(StatusCode::Ok, JSON, &json!({}))),
        Endpoint::Health => Ok(response::json_body(
            StatusCode::Ok,
            JSON,
            &json!({"status": "ok"}),
        )),
        Endpoint::Ready => ready(reg).await,
        Endpoint::Token => token(app, who),
        Endpoint::Metrics => metrics(app).await,
        Endpoint::Catalog(page) => catalog(reg, page).await,
        Endpoint::ListTags { name, page } => match proxied::tags(app, req, &name, &page).await? {
            Some(res) => Ok(res),
            None => list_tags(reg, name, page).await,
        },
        Endpoint::GetManifest {
            name,
            reference,
            head,
        } => match proxied::manifest(app, req, &name, &reference, head).await? {
            Some(res) => Ok(res),
            None => get_manifest(reg, name, reference, head).await,
        },
        Endpoint::PutManifest {
            name,
            reference,
            tags,
        } => put_manifest(reg, req, name, reference, tags).await,
        Endpoint::DeleteManifest { name, reference } => {
            blocking(reg, move |r| r.delete_manifest(&name, &reference)).await?;
            Ok(response::empty(StatusCode::Accepted))
        }
        Endpoint::GetBlob { name, digest, head } => {
            match proxied::blob(app, req, &name, &digest, head).await? {
                Some(res) => Ok(res),
                None => get_blob(reg, req, name, digest, head).await,
            }
        }
        Endpoint::DeleteBlob { name, digest } => {
            blocking(reg, move |r| r.delete_blob(&name, &digest)).await?;
            Ok(response::empty(StatusCode::Accepted))
        }
        Endpoint::StartUpload {
            name,
            digest,
            mount,
        } => start_upload(reg, req, name, digest, mount).await,
        Endpoint::UploadStatus { name, id } => upload_status(reg, name, id).await,
        Endpoint::PatchUpload { name, id } => patch_upload(reg, req, name, id).await,
        Endpoint::FinishUpload { name, id, digest } => {
            finish_upload(reg, req, name, id, digest).await
        }
        Endpoint::CancelUpload { name, id } => {
            blocking(reg, move |r| r.cancel_upload(&name, &id)).await?;
            Ok(response::empty(StatusCode::NoContent))
        }
        Endpoint::Referrers {
            name,
            digest,
            artifact_type,
        } => referrers(reg, name, digest, artifact_type).await,
        Endpoint::Ui(route) => super::ui::serve(app, req, route, who).await,
    }
}

/// A Bearer token for the sender: a user's, after Basic credentials; an anonymous (pull-only)
/// one when anonymous pulls are allowed. An open registry hands out a token nobody checks.
fn token(app: &App, who: &Identity) -> Result<Response> {
    let token = match &app.auth {
        None => "open".to_owned(),
        Some(auth) if *who == Identity::Anonymous && !auth.anonymous_pull => {
            return Err(Error::Unauthorized("a token needs a login".into()));
        }
        Some(auth) => auth.issue_token(who, crate::clock::now()),
    };
    let body = json!({ "token": token, "access_token": token, "expires_in": TOKEN_TTL });
    Ok(response::json_body(StatusCode::Ok, JSON, &body))
}

async fn metrics(app: &App) -> Result<Response> {
    use std::sync::atomic::Ordering::Relaxed;
    let reg = app.registry.clone();
    let holdings = smol::unblock(move || reg.holdings()).await?;
    let snapshot = crate::metrics::Snapshot {
        holdings,
        bytes_in: app.traffic.bytes_in.load(Relaxed),
        bytes_out: app.traffic.bytes_out.load(Relaxed),
        in_flight: app.in_flight() as u64,
        upload_sessions: app.registry.upload_sessions() as u64,
        started_at: app.started_at,
    };
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    res.set_body(app.metrics.render(&snapshot));
    Ok(res)
}

async fn ready(reg: &Arc<Registry>) -> Result<Response> {
    match blocking(reg, |r| r.check_ready()).await {
        Ok(()) => Ok(response::json_body(
            StatusCode::Ok,
            JSON,
            &json!({"status": "ready"}),
        )),
        Err(e) => Err(Error::Unavailable(format!("not ready: {e}"))),
    }
}

async fn catalog(reg: &Arc<Registry>, page: Page) -> Result<Response> {
    let Page { n, last } = page;
    let listing = blocking(reg, move |r| r.catalog(n, last.as_deref())).await?;
    let mut res = response::json_body(
        StatusCode::Ok,
        JSON,
        &json!({ "repositories": listing.items }),
    );
    if let (true, Some(n), Some(last)) = (listing.more, n, listing.items.last()) {
        res.insert_header("Link", response::next_link("/v2/_catalog", n, last));
    }
    Ok(res)
}

pub(super) async fn list_tags(reg: &Arc<Registry>, name: RepoName, page: Page) -> Result<Response> {
    let Page { n, last } = page;
    let path = format!("/v2/{name}/tags/list");
    let shown = name.to_string();
    let listing = blocking(reg, move |r| r.tags(&name, n, last.as_deref())).await?;
    let body = json!({ "name": shown, "tags": listing.items });
    let mut res = response::json_body(StatusCode::Ok, JSON, &body);
    if let (true, Some(n), Some(last)) = (listing.more, n, listing.items.last()) {
        res.insert_header("Link", response::next_link(&path, n, last));
    }
    Ok(res)
}

async fn get_manifest(
    reg: &Arc<Registry>,
    name: RepoName,
    reference: Reference,
    head: bool,
) -> Result<Response> {
    let hit = blocking(reg, move |r| r.manifest(&name, &reference, !head)).await?;
    Ok(manifest_response(hit))
}

/// The answer to a manifest GET or HEAD.
pub(super) fn manifest_response(hit: crate::registry::ManifestHit) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", hit.media_type.as_str());
    res.insert_header(DOCKER_CONTENT_DIGEST, hit.digest.as_str());
    res.insert_header("ETag", format!("\"{}\"", hit.digest));
    match hit.body {
        Some(bytes) => res.set_body(bytes),
        None => res.set_body(response::head_body(hit.size)),
    }
    res
}

async fn put_manifest(
    reg: &Arc<Registry>,
    req: &mut Request,
    name: RepoName,
    reference: Reference,
    extra_tags: Vec<Tag>,
) -> Result<Response> {
    let content_type = req.header("Content-Type").map(|v| v.as_str().to_owned());
    let body = read_body_limited(req, MAX_MANIFEST_BYTES, "manifest").await?;
    let location_name = name.clone();
    let announce_tags = !extra_tags.is_empty();
    let pushed = blocking(reg, move |r| {
        r.put_manifest(
            &name,
            &reference,
            &extra_tags,
            content_type.as_deref(),
            &body,
        )
    })
    .await?;
    let digest = pushed.digest.to_string();
    let mut res = response::empty(StatusCode::Created);
    res.insert_header(
        "Location",
        response::manifest_location(&location_name, &digest),
    );
    res.insert_header(DOCKER_CONTENT_DIGEST, digest.as_str());
    if let Some(subject) = &pushed.subject {
        res.insert_header("OCI-Subject", subject.to_string());
    }
    if announce_tags {
        for t in &pushed.tags {
            res.append_header("OCI-Tag", t.as_str());
        }
    }
    Ok(res)
}

pub(super) async fn get_blob(
    reg: &Arc<Registry>,
    req: &Request,
    name: RepoName,
    digest: Digest,
    head: bool,
) -> Result<Response> {
    let shown = digest.to_string();
    let hit = blocking(reg, move |r| r.blob(&name, &digest, !head)).await?;
    let size = hit.size;
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", "application/octet-stream");
    res.insert_header(DOCKER_CONTENT_DIGEST, shown.as_str());
    res.insert_header("Accept-Ranges", "bytes");
    res.insert_header("ETag", format!("\"{shown}\""));
    let Some(mut file) = hit.file else {
        res.set_body(response::head_body(size));
        return Ok(res);
    };
    let (start, len) = match parse_range(req.header("Range").map(|v| v.as_str()), size) {
        RangeRequest::Full => (0, size),
        RangeRequest::Unsatisfiable => return Err(Error::RangeNotSatisfiable { size }),
        RangeRequest::Partial(r) => {
            res.set_status(StatusCode::PartialContent);
            res.insert_header(
                "Content-Range",
                format!("bytes {}-{}/{size}", r.start, r.end),
            );
            (r.start, r.len())
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .ctx(|| format!("seeking in blob {shown}"))?;
    }
    match req
        .ext()
        .get::<Direct>()
        .filter(|_| len >= direct::MIN_BYTES)
    {
        // Plain TCP: the connection's task copies the file to the socket (the seek above does
        // not matter there: it reads at explicit offsets).
        Some(direct) => {
            let body = direct.body(file, start, len);
            res.set_body(response::sized_reader(body, len));
        }
        None => res.set_body(response::sized_reader(FileBody::new(file, len), len)),
    }
    Ok(res)
}

async fn start_upload(
    reg: &Arc<Registry>,
    req: &mut Request,
    name: RepoName,
    digest: Option<Digest>,
    mount: Option<Mount>,
) -> Result<Response> {
    if let Some(Mount { digest, from }) = mount {
        let (to, d) = (name.clone(), digest.clone());
        let outcome = blocking(reg, move |r| r.mount_blob(&to, &d, from.as_ref())).await?;
        if outcome == MountOutcome::Mounted {
            return Ok(blob_created(&name, &digest));
        }
        // Not available to mount: the client uploads it, in a fresh session (202 below).
    } else if let Some(digest) = digest {
        return single_request_upload(reg, req, name, digest).await;
    }
    let n = name.clone();
    let shared = blocking(reg, move |r| r.start_upload(&n)).await?;
    let id = shared.lock().await.id.clone();
    Ok(upload_accepted(StatusCode::Accepted, &name, &id, 0))
}

/// `POST ?digest=` with the whole blob as the body. Whatever fails, nothing of it is kept.
async fn single_request_upload(
    reg: &Arc<Registry>,
    req: &mut Request,
    name: RepoName,
    digest: Digest,
) -> Result<Response> {
    let expected = content_length(req)?;
    let (n, alg) = (name.clone(), digest.algorithm());
    let mut session = blocking(reg, move |r| r.start_single_request_upload(&n, alg)).await?;
    let mut body = req.take_body();
    let appended = session.append(&mut body, expected).await;
    let d = digest.clone();
    blocking(reg, move |r| {
        let outcome = appended.and_then(|_| r.finish_upload(&mut session, &d));
        if outcome.is_err() {
            r.discard_upload(&mut session)?;
        }
        outcome
    })
    .await?;
    Ok(blob_created(&name, &digest))
}

async fn upload_status(reg: &Arc<Registry>, name: RepoName, id: String) -> Result<Response> {
    let (n, i) = (name.clone(), id.clone());
    let shared = blocking(reg, move |r| r.upload(&n, &i)).await?;
    let offset = shared.lock().await.offset();
    Ok(upload_accepted(StatusCode::NoContent, &name, &id, offset))
}

async fn patch_upload(
    reg: &Arc<Registry>,
    req: &mut Request,
    name: RepoName,
    id: String,
) -> Result<Response> {
    let (n, i) = (name.clone(), id.clone());
    let shared = blocking(reg, move |r| r.upload(&n, &i)).await?;
    let mut session = shared.try_lock_arc().ok_or_else(|| busy(&id))?;
    let expected = chunk_length(req, session.offset())?;
    let mut body = req.take_body();
    session.append(&mut body, expected).await?;
    Ok(upload_accepted(
        StatusCode::Accepted,
        &name,
        &id,
        session.offset(),
    ))
}

async fn finish_upload(
    reg: &Arc<Registry>,
    req: &mut Request,
    name: RepoName,
    id: String,
    digest: Digest,
) -> Result<Response> {
    let (n, i) = (name.clone(), id.clone());
    let shared = blocking(reg, move |r| r.upload(&n, &i)).await?;
    let mut session = shared.try_lock_arc().ok_or_else(|| busy(&id))?;
    // The final PUT may carry the last chunk.
    let expected = chunk_length(req, session.offset())?;
    if expected != Some(0) {
        let mut body = req.take_body();
        session.append(&mut body, expected).await?;
    }
    let d = digest.clone();
    blocking(reg, move |r| r.finish_upload(&mut session, &d)).await?;
    Ok(blob_created(&name, &digest))
}

async fn referrers(
    reg: &Arc<Registry>,
    name: RepoName,
    subject: Digest,
    artifact_type: Option<String>,
) -> Result<Response> {
    let filter = artifact_type.clone();
    let rows = blocking(reg, move |r| {
        r.referrers(&name, &subject, filter.as_deref())
    })
    .await?;
    let manifests: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut d = json!({ "mediaType": r.media_type, "digest": r.digest, "size": r.size });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = Value::String(t);
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut res = response::json_body(StatusCode::Ok, OCI_INDEX, &body);
    if artifact_type.is_some() {
        res.insert_header("OCI-Filters-Applied", "artifactType");
    }
    Ok(res)
}

// ---- helpers ------------------------------------------------------------------------------------

fn blob_created(name: &RepoName, digest: &Digest) -> Response {
    let mut res = response::empty(StatusCode::Created);
    res.insert_header("Location", response::blob_location(name, digest));
    res.insert_header(DOCKER_CONTENT_DIGEST, digest.to_string());
    res
}

fn upload_accepted(status: StatusCode, name: &RepoName, id: &str, offset: u64) -> Response {
    let mut res = response::empty(status);
    res.insert_header("Location", response::upload_location(name, id));
    res.insert_header("Range", upload_range_header(offset));
    res.insert_header("Docker-Upload-UUID", id);
    res
}

fn busy(id: &str) -> Error {
    Error::UploadBusy(format!(
        "upload {id} is in use by another request: wait for it, then ask where the upload ends"
    ))
}

/// The request's `Content-Length`, if it sent one.
fn content_length(req: &Request) -> Result<Option<u64>> {
    match req.header("Content-Length") {
        None => Ok(None),
        Some(v) => v.as_str().trim().parse().map(Some).map_err(|_| {
            Error::BadRequest(format!("Content-Length {:?} is not a number", v.as_str()))
        }),
    }
}

/// How many bytes an upload chunk must carry: from `Content-Range` (which must start where the
/// upload ends: 416 otherwise) or `Content-Length`; `None` for a chunked body of unknown length.
fn chunk_length(req: &Request, offset: u64) -> Result<Option<u64>> {
    let length = content_length(req)?;
    let Some(h) = req.header("Content-Range") else {
        return Ok(length);
    };
    let range = parse_content_range(h.as_str()).map_err(Error::BlobUploadInvalid)?;
    if range.start != offset {
        return Err(Error::UploadOutOfOrder {
            offset,
            message: format!(
                "chunk starts at byte {}, but the upload has {offset} bytes: send bytes from {offset}",
                range.start
            ),
        });
    }
    match length {
        Some(l) if l != range.len() => Err(Error::SizeInvalid(format!(
            "Content-Length {l} does not match Content-Range {}-{} ({} bytes)",
            range.start,
            range.end,
            range.len()
        ))),
        _ => Ok(Some(range.len())),
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond it, before reading when the client
/// announced the length).
async fn read_body_limited(req: &mut Request, limit: usize, what: &str) -> Result<Vec<u8>> {
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
