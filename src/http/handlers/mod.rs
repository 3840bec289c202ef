//! The handlers, one file per resource: read what the request carries, call the registry (off
//! the executor, `App::blocking`) or the pull-through cache, shape the response. Each handler
//! decides for itself whether the cache answers (`cache.rs` says whether a name goes through
//! it); none calls back into another. Errors are returned, never answered here: the server
//! turns every one into the spec's envelope in one place.
//!
//! ```text
//! mod.rs        dispatch: what the operator switched off, then one handler per Endpoint
//! service.rs    /v2/, /healthz, /readyz, /token, /metrics
//! catalog.rs    the repository list
//! tags.rs       tag lists (the upstream's, for a cached name)
//! manifests.rs  manifest GET/HEAD (local or through the cache), PUT, DELETE
//! blobs.rs      blob GET/HEAD (local, Range, direct to the socket; or streamed from a fill), DELETE
//! uploads.rs    upload sessions, chunks, single-request uploads, mounts
//! referrers.rs  the referrers API
//! cache.rs      whether a read goes through the pull-through cache (helper)
//! body.rs       Content-Length and bounded body reads (helper)
//! ```
//!
//! The web page's routes are answered by `ui/`.

mod blobs;
mod body;
mod cache;
mod catalog;
mod manifests;
mod referrers;
mod service;
mod tags;
mod uploads;

use http_types::{Request, Response};

use super::app::App;
use super::route::Endpoint;
use crate::auth::Identity;
use crate::error::{Error, Result};

/// Answers one parsed request from `who` (already allowed to make it).
pub async fn dispatch(
    app: &App,
    req: &mut Request,
    endpoint: Endpoint,
    who: &Identity,
) -> Result<Response> {
    switched_off(app, &endpoint)?;
    match endpoint {
        Endpoint::ApiBase => Ok(service::api_base()),
        Endpoint::Health => Ok(service::health()),
        Endpoint::Ready => service::ready(app).await,
        Endpoint::Token => service::token(app, who),
        Endpoint::Metrics => service::metrics(app).await,
        Endpoint::Catalog(page) => catalog::list(app, page).await,
        Endpoint::ListTags { name, page } => tags::list(app, req, name, page).await,
        Endpoint::GetManifest {
            name,
            reference,
            head,
        } => manifests::get(app, req, name, reference, head).await,
        Endpoint::PutManifest {
            name,
            reference,
            tags,
        } => manifests::put(app, req, name, reference, tags).await,
        Endpoint::DeleteManifest { name, reference } => {
            manifests::delete(app, name, reference).await
        }
        Endpoint::GetBlob { name, digest, head } => blobs::get(app, req, name, digest, head).await,
        Endpoint::DeleteBlob { name, digest } => blobs::delete(app, name, digest).await,
        Endpoint::StartUpload {
            name,
            digest,
            mount,
        } => uploads::start(app, req, name, digest, mount).await,
        Endpoint::UploadStatus { name, id } => uploads::status(app, name, id).await,
        Endpoint::PatchUpload { name, id } => uploads::patch(app, req, name, id).await,
        Endpoint::FinishUpload { name, id, digest } => {
            uploads::finish(app, req, name, id, digest).await
        }
        Endpoint::CancelUpload { name, id } => uploads::cancel(app, name, id).await,
        Endpoint::Referrers {
            name,
            digest,
            artifact_type,
        } => referrers::list(app, name, digest, artifact_type).await,
        Endpoint::Ui(route) => super::ui::serve(app, req, route, who).await,
    }
}

/// Refuses what the operator switched off: every write with `--read-only`, deletes with
/// `--no-delete`.
fn switched_off(app: &App, endpoint: &Endpoint) -> Result<()> {
    if endpoint.is_write() && app.restrictions.read_only {
        return Err(Error::Unsupported(
            "this registry is read-only (--read-only): pushes and deletes are refused".into(),
        ));
    }
    if endpoint.is_delete() && app.restrictions.no_delete {
        return Err(Error::Unsupported(
            "deletes are disabled on this registry (--no-delete)".into(),
        ));
    }
    Ok(())
}
