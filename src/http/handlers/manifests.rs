//! Manifests: GET and HEAD (from the index, or through the pull-through cache for a name an
//! upstream serves), PUT, DELETE. Uses `cache.rs` and `body.rs`; imports nothing else from the
//! handlers.

use http_types::{Request, Response, StatusCode};

use super::{body, cache};
use crate::error::Result;
use crate::http::app::App;
use crate::http::response::{self, DOCKER_CONTENT_DIGEST};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::reference::{Reference, RepoName, Tag};
use crate::registry::ManifestHit;

pub(super) async fn get(
    app: &App,
    req: &Request,
    name: RepoName,
    reference: Reference,
    head: bool,
) -> Result<Response> {
    let hit = match cache::route(app, &name, req, false).await? {
        Some((proxy, route)) => proxy.manifest(&route, &reference, head).await?,
        None => {
            app.blocking(move |r| r.manifest(&name, &reference, !head))
                .await?
        }
    };
    Ok(found(hit))
}

/// The answer to a manifest GET or HEAD.
fn found(hit: ManifestHit) -> Response {
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

pub(super) async fn put(
    app: &App,
    req: &mut Request,
    name: RepoName,
    reference: Reference,
    extra_tags: Vec<Tag>,
) -> Result<Response> {
    let content_type = req.header("Content-Type").map(|v| v.as_str().to_owned());
    let bytes = body::read_limited(req, MAX_MANIFEST_BYTES, "manifest").await?;
    let location_name = name.clone();
    let announce_tags = !extra_tags.is_empty();
    let pushed = app
        .blocking(move |r| {
            r.put_manifest(
                &name,
                &reference,
                &extra_tags,
                content_type.as_deref(),
                &bytes,
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

pub(super) async fn delete(app: &App, name: RepoName, reference: Reference) -> Result<Response> {
    app.blocking(move |r| r.delete_manifest(&name, &reference))
        .await?;
    Ok(response::empty(StatusCode::Accepted))
}
