//! `GET /v2/_catalog`: the repositories, a page at a time. Imports nothing from the other
//! handlers.

use http_types::{Response, StatusCode};
use serde_json::json;

use crate::error::Result;
use crate::http::app::App;
use crate::http::response::{self, JSON};
use crate::http::route::Page;

pub(super) async fn list(app: &App, page: Page) -> Result<Response> {
    let Page { n, last } = page;
    let listing = app.blocking(move |r| r.catalog(n, last.as_deref())).await?;
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
