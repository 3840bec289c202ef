//! `GET /v2/<name>/referrers/<digest>`: the manifests whose subject is a digest, as an OCI
//! index, filtered by `?artifactType=`. Imports nothing from the other handlers.

use http_types::{Response, StatusCode};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::Result;
use crate::http::app::App;
use crate::http::response;
use crate::manifest::OCI_INDEX;
use crate::reference::RepoName;

pub(super) async fn list(
    app: &App,
    name: RepoName,
    subject: Digest,
    artifact_type: Option<String>,
) -> Result<Response> {
    let filter = artifact_type.clone();
    let rows = app
        .blocking(move |r| r.referrers(&name, &subject, filter.as_deref()))
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
