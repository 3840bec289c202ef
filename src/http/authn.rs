//! Authentication of one request: who sent it (`Authorization: Basic`, or a Bearer token atoll
//! issued), with the throttling of addresses that keep failing; whether they may make it (the
//! access rule of `auth`); and the `WWW-Authenticate` challenge a 401 carries. The checks
//! themselves are `auth`'s; this is where a request meets them. Of `http/` it uses `app.rs`
//! and `route.rs`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_types::Request;
use smol::Timer;

use super::app::App;
use super::route::Endpoint;
use crate::auth::limiter::Verdict;
use crate::auth::{self, Access, Auth, Identity, Refusal};
use crate::error::{Error, Result};

/// Who sent `req`, and whether they may make it: `Err` is the refusal (401, 429), next to whoever
/// was refused, for the access log.
pub async fn identify(
    app: &App,
    req: &Request,
    endpoint: &Endpoint,
    peer: SocketAddr,
) -> (Identity, Result<()>) {
    let Some(auth) = &app.auth else {
        return (Identity::Anonymous, Ok(()));
    };
    let header = req.header("Authorization").map(|h| h.as_str().to_owned());
    let who = match authenticate(app, auth, header.as_deref(), peer).await {
        Ok(who) => who,
        Err(e) => return (Identity::Anonymous, Err(e)),
    };
    // The API base is where clients learn how to log in: without credentials, the challenge.
    let probe = *endpoint == Endpoint::ApiBase && header.is_none();
    if probe || !auth::allowed(auth.anonymous_pull, &who, endpoint.access()) {
        let why = match endpoint.access() {
            Access::Write => "pushes and deletes need a login",
            _ => "this registry needs a login",
        };
        return (who, Err(Error::Unauthorized(why.into())));
    }
    (who, Ok(()))
}

/// Checks credentials, throttling addresses that keep failing. A first login costs a bcrypt
/// check on a blocking thread; later requests with the same credentials are answered from
/// memory.
async fn authenticate(
    app: &App,
    auth: &Arc<Auth>,
    header: Option<&str>,
    peer: SocketAddr,
) -> Result<Identity> {
    let Some(header) = header else {
        return Ok(Identity::Anonymous);
    };
    let now_ms = crate::clock::now_ms();
    if let Some(wait) = auth.throttled(peer.ip(), now_ms) {
        return Err(too_many(wait));
    }
    if let Some(who) = auth.cached(Some(header)) {
        return Ok(who);
    }
    let (a, h) = (auth.clone(), header.to_owned());
    let checked = smol::unblock(move || a.authenticate(Some(&h), crate::clock::now())).await;
    match checked {
        Ok(who) => {
            if who != Identity::Anonymous {
                auth.record(peer.ip(), true, now_ms);
            }
            Ok(who)
        }
        Err(Refusal::Throttled(wait)) => Err(too_many(wait)),
        Err(Refusal::BadCredentials) => {
            app.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
            let bad = || Error::Unauthorized("wrong user name, password or token".into());
            match auth.record(peer.ip(), false, now_ms) {
                Verdict::Allow => Err(bad()),
                Verdict::Delay(d) => {
                    Timer::after(d).await;
                    Err(bad())
                }
                Verdict::Block(wait) => Err(too_many(wait)),
            }
        }
    }
}

fn too_many(wait: Duration) -> Error {
    Error::TooManyRequests(format!(
        "too many failed logins from this address: try again in {} s",
        wait.as_secs().max(1)
    ))
}

/// `WWW-Authenticate` for a 401: Basic when every request needs a login; with anonymous pulls,
/// a Bearer challenge pointing at atoll's own token endpoint, because docker refuses to pull
/// anonymously from a Basic challenge but fetches an anonymous token from a Bearer one.
pub fn challenge(app: &App, auth: &Auth, req: &Request) -> String {
    if !auth.anonymous_pull {
        return "Basic realm=\"atoll\"".into();
    }
    let host: String = req
        .header("Host")
        .map(|h| h.as_str())
        .unwrap_or("localhost")
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | ' '))
        .collect();
    let scheme = if app.https { "https" } else { "http" };
    let mut c = format!("Bearer realm=\"{scheme}://{host}/token\",service=\"atoll\"");
    if let Ok(endpoint) = Endpoint::parse(&req.method(), req.url().path(), req.url().query()) {
        if let Some(name) = endpoint.repo() {
            let actions = if endpoint.access() == Access::Write {
                "pull,push"
            } else {
                "pull"
            };
            c.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
        }
    }
    c
}
