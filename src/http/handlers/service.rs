//! The endpoints around the registry API: `/v2/` (the version check), `/healthz`, `/readyz`,
//! `/token` and `/metrics`. Imports nothing from the other handlers.

use std::sync::atomic::Ordering::Relaxed;

use http_types::{Response, StatusCode};
use serde_json::json;

use crate::auth::{Identity, TOKEN_TTL};
use crate::error::{Error, Result};
use crate::http::app::App;
use crate::http::response::{self, JSON};

/// `GET /v2/`: an empty JSON object (the header every response carries says the version).
pub(super) fn api_base() -> Response {
    response::json_body(StatusCode::Ok, JSON, &json!({}))
}

/// `GET /healthz`: the process answers.
pub(super) fn health() -> Response {
    response::json_body(StatusCode::Ok, JSON, &json!({"status": "ok"}))
}

/// `GET /readyz`: the data directory and the index can be used.
pub(super) async fn ready(app: &App) -> Result<Response> {
    match app.blocking(|r| r.check_ready()).await {
        Ok(()) => Ok(response::json_body(
            StatusCode::Ok,
            JSON,
            &json!({"status": "ready"}),
        )),
        Err(e) => Err(Error::Unavailable(format!("not ready: {e}"))),
    }
}

/// A Bearer token for the sender: a user's, after Basic credentials; an anonymous (pull-only)
/// one when anonymous pulls are allowed. An open registry hands out a token nobody checks.
pub(super) fn token(app: &App, who: &Identity) -> Result<Response> {
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

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(app: &App) -> Result<Response> {
    let holdings = app.blocking(|r| r.holdings()).await?;
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
