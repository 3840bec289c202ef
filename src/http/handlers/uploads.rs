//! Blob uploads: start one (or mount a blob from another repository, or take the whole blob in
//! one POST), its status, PATCH chunks, the final PUT, cancel. Uses `body.rs`; imports nothing
//! else from the handlers.

use http_types::{Request, Response, StatusCode};
use smol::lock::MutexGuardArc;

use super::body::content_length;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::http::app::App;
use crate::http::response::{self, DOCKER_CONTENT_DIGEST};
use crate::http::route::Mount;
use crate::range::{parse_content_range, upload_range_header};
use crate::reference::RepoName;
use crate::registry::MountOutcome;
use crate::upload::Session;

pub(super) async fn start(
    app: &App,
    req: &mut Request,
    name: RepoName,
    digest: Option<Digest>,
    mount: Option<Mount>,
) -> Result<Response> {
    if let Some(Mount { digest, from }) = mount {
        let (to, d) = (name.clone(), digest.clone());
        let outcome = app
            .blocking(move |r| r.mount_blob(&to, &d, from.as_ref()))
            .await?;
        if outcome == MountOutcome::Mounted {
            return Ok(blob_created(&name, &digest));
        }
        // Not available to mount: the client uploads it, in a fresh session (202 below).
    } else if let Some(digest) = digest {
        return single_request(app, req, name, digest).await;
    }
    let n = name.clone();
    let shared = app.blocking(move |r| r.start_upload(&n)).await?;
    let id = shared.lock().await.id.clone();
    Ok(upload_accepted(StatusCode::Accepted, &name, &id, 0))
}

/// `POST ?digest=` with the whole blob as the body. Whatever fails, nothing of it is kept.
async fn single_request(
    app: &App,
    req: &mut Request,
    name: RepoName,
    digest: Digest,
) -> Result<Response> {
    let expected = content_length(req)?;
    let (n, alg) = (name.clone(), digest.algorithm());
    let mut session = app
        .blocking(move |r| r.start_single_request_upload(&n, alg))
        .await?;
    let mut body = req.take_body();
    // One request: nothing to resume, so no state to save.
    let appended = session
        .append(&mut body, expected, |_, _| async { Ok(()) })
        .await;
    let d = digest.clone();
    app.blocking(move |r| {
        let outcome = appended.and_then(|_| r.finish_upload(&mut session, &d));
        if outcome.is_err() {
            r.discard_upload(&mut session)?;
        }
        outcome
    })
    .await?;
    Ok(blob_created(&name, &digest))
}

pub(super) async fn status(app: &App, name: RepoName, id: String) -> Result<Response> {
    let (n, i) = (name.clone(), id.clone());
    let shared = app.blocking(move |r| r.upload(&n, &i)).await?;
    let offset = shared.lock().await.offset();
    Ok(upload_accepted(StatusCode::NoContent, &name, &id, offset))
}

pub(super) async fn patch(
    app: &App,
    req: &mut Request,
    name: RepoName,
    id: String,
) -> Result<Response> {
    let mut session = held(app, &name, &id).await?;
    let expected = chunk_length(req, session.offset())?;
    let mut body = req.take_body();
    session.append(&mut body, expected, saver(app, &id)).await?;
    Ok(upload_accepted(
        StatusCode::Accepted,
        &name,
        &id,
        session.offset(),
    ))
}

pub(super) async fn finish(
    app: &App,
    req: &mut Request,
    name: RepoName,
    id: String,
    digest: Digest,
) -> Result<Response> {
    let mut session = held(app, &name, &id).await?;
    // The final PUT may carry the last chunk.
    let expected = chunk_length(req, session.offset())?;
    if expected != Some(0) {
        let mut body = req.take_body();
        session.append(&mut body, expected, saver(app, &id)).await?;
    }
    let d = digest.clone();
    app.blocking(move |r| r.finish_upload(&mut session, &d))
        .await?;
    Ok(blob_created(&name, &digest))
}

pub(super) async fn cancel(app: &App, name: RepoName, id: String) -> Result<Response> {
    app.blocking(move |r| r.cancel_upload(&name, &id)).await?;
    Ok(response::empty(StatusCode::NoContent))
}

/// Saves an upload's state in its index row (an upload into the object store).
fn saver<'a>(app: &'a App, id: &str) -> impl FnOnce(String, String) -> Saving<'a> {
    let id = id.to_owned();
    move |base, state| Box::pin(app.blocking(move |r| r.save_upload(&id, &base, &state)))
}

type Saving<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

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

/// Upload `id` of `name`, held for this request's bytes: a session takes one writer at a time,
/// and a second one is told to wait, not queued behind the first.
async fn held(app: &App, name: &RepoName, id: &str) -> Result<MutexGuardArc<Session>> {
    let (n, i) = (name.clone(), id.to_owned());
    let shared = app.blocking(move |r| r.upload(&n, &i)).await?;
    shared.try_lock_arc().ok_or_else(|| {
        Error::UploadBusy(format!(
            "upload {id} is in use by another request: wait for it, then ask where the upload ends"
        ))
    })
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
