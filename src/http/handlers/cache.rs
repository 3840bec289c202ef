//! Whether a read goes through the pull-through cache, and to which upstream: the question the
//! resource handlers (`blobs.rs`, `manifests.rs`, `tags.rs`) ask first. They then call the
//! proxy themselves. Imports nothing from the other handlers.

use std::sync::Arc;

use http_types::Request;

use crate::error::Result;
use crate::http::app::App;
use crate::proxy::{Proxy, Route};
use crate::reference::RepoName;

/// The cache's route for a request for `name`, if it has one: none without upstreams, or for a
/// name pushed here (the proxy decides, `Proxy::route`). `?ns=` is containerd's way of naming
/// the registry it means; `blob_head` marks a blob HEAD.
pub(super) async fn route(
    app: &App,
    name: &RepoName,
    req: &Request,
    blob_head: bool,
) -> Result<Option<(Arc<Proxy>, Route)>> {
    let Some(proxy) = app.proxy.clone() else {
        return Ok(None);
    };
    let ns = req
        .url()
        .query_pairs()
        .find(|(k, _)| k == "ns")
        .map(|(_, v)| v.into_owned());
    let (p, n) = (proxy.clone(), name.clone());
    let route = smol::unblock(move || p.route(&n, ns.as_deref(), blob_head)).await?;
    Ok(route.map(|r| (proxy, r)))
}
