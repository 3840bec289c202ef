//! `GET /v2/<name>/tags/list`: a repository's tags, a page at a time; for a name the
//! pull-through cache serves, the upstream's list (the cached tags while it cannot be asked).
//! Uses `cache.rs`; imports nothing else from the handlers.

use http_types::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::cache;
use crate::error::Result;
use crate::http::app::App;
use crate::http::response::{self, JSON};
use crate::http::route::Page;
use crate::reference::RepoName;

pub(super) async fn list(app: &App, req: &Request, name: RepoName, page: Page) -> Result<Response> {
    let Some((proxy, route)) = cache::route(app, &name, req, false).await? else {
        return local(app, name, page).await;
    };
    if let Some(body) = proxy.tags(&route, req.url().query()).await? {
        if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
            if v.get("tags").is_some() {
                v["name"] = Value::String(name.to_string());
                return Ok(response::json_body(StatusCode::Ok, JSON, &v));
            }
        }
    }
    // The upstream cannot be asked: the tags the cache holds.
    local(app, route.local, page).await
}

/// The tags the index holds for `name`.
async fn local(app: &App, name: RepoName, page: Page) -> Result<Response> {
    let Page { n, last } = page;
    let path = format!("/v2/{name}/tags/list");
    let shown = name.to_string();
    let listing = app
        .blocking(move |r| r.tags(&name, n, last.as_deref()))
        .await?;
    let body = json!({ "name": shown, "tags": listing.items });
    let mut res = response::json_body(StatusCode::Ok, JSON, &body);
    if let (true, Some(n), Some(last)) = (listing.more, n, listing.items.last()) {
        res.insert_header("Link", response::next_link(&path, n, last));
    }
    Ok(res)
}
