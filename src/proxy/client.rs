//! The HTTP(S) client atoll uses to talk to upstream registries.
//!
//! HTTP/1.1 through `net`, which reuses keep-alive connections and resends a GET or HEAD whose
//! idle connection turned out to be closed.
//!
//! It answers the registry's login challenge itself: a `Bearer` challenge sends it to the token
//! service named in the challenge (with the upstream's credentials if it has any, anonymously
//! if not) and the token is reused until it expires; a `Basic` challenge gets the credentials.
//! It follows redirects (Docker Hub sends blob downloads to a CDN), dropping credentials when
//! the host changes. Every step is bounded by a deadline for the response head. Credentials
//! and tokens never reach a log line or an error message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_types::{Method, Request, Response, StatusCode, Url};
use log::debug;
use smol::future::FutureExt;
use smol::Timer;

use super::challenge;
use super::upstreams::Upstream;
use crate::error::{Error, Result};
use crate::net::Http;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// An answer that is not wanted (a 401 before logging in, a redirect) is read to its end, so
/// its connection can be reused, when it is at most this long and arrives within
/// [`DISCARD_TIME`]; otherwise it is dropped with its connection.
const DISCARD_BYTES: usize = 64 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(1);

pub struct Client {
    /// Bearer tokens by (upstream URL, scope), with when they stop being good.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Connections to upstreams (and to their token services and CDNs).
    http: Http,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            tokens: Mutex::new(HashMap::new()),
            http: Http::new(),
        }
    }

    /// Closes the connections idle for too long; returns how many. Run periodically, so an
    /// upstream not asked again does not keep sockets open.
    pub fn close_idle(&self, now: Instant) -> usize {
        self.http.close_idle(now)
    }

    /// Sends `method path` to the upstream (path starts with `/v2/`), logging in as needed for
    /// `scope` (`repository:NAME:pull`). `head_timeout` bounds each exchange up to the
    /// response head; the body is the caller's to read (and to bound).
    pub async fn send(
        &self,
        up: &Upstream,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope: &str,
        head_timeout: Duration,
    ) -> Result<Response> {
        let url = parse_url(&format!("{}{path}", up.url), up)?;
        let key = (up.url.clone(), scope.to_owned());
        let mut auth = self.cached_token(&key).map(|t| format!("Bearer {t}"));
        for attempt in 0..2 {
            let res = self
                .follow(
                    up,
                    method,
                    url.clone(),
                    accept,
                    auth.as_deref(),
                    head_timeout,
                )
                .await?;
            if res.status() != StatusCode::Unauthorized || attempt == 1 {
                return Ok(res);
            }
            let header = res
                .header("WWW-Authenticate")
                .map(|h| h.as_str().to_owned());
            discard(res).await;
            let challenge = header
                .as_deref()
                .and_then(challenge::parse)
                .ok_or_else(|| {
                    Error::Upstream(format!(
                        "upstream {} answered 401 without a usable challenge",
                        up.label()
                    ))
                })?;
            auth = Some(match challenge.scheme.as_str() {
                "bearer" => {
                    let token = self
                        .fetch_token(up, &challenge, scope, head_timeout)
                        .await?;
                    let header = format!("Bearer {}", token.0);
                    self.tokens_lock().insert(key.clone(), token);
                    header
                }
                "basic" => basic(up).ok_or_else(|| {
                    Error::Upstream(format!(
                        "upstream {} needs a login: give --upstream-credentials {}=USER:PASSWORD",
                        up.label(),
                        up.label()
                    ))
                })?,
                other => {
                    return Err(Error::Upstream(format!(
                        "upstream {} asks for {other} authentication, which atoll does not speak",
                        up.label()
                    )))
                }
            });
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn cached_token(&self, key: &(String, String)) -> Option<String> {
        let mut tokens = self.tokens_lock();
        match tokens.get(key) {
            Some((t, until)) if *until > Instant::now() => Some(t.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    fn tokens_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (String, Instant)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token flow: GET realm?service=..&scope=.. (with Basic credentials if the upstream
    /// has any) and read `token` or `access_token`, and `expires_in`.
    async fn fetch_token(
        &self,
        up: &Upstream,
        c: &challenge::Challenge,
        scope: &str,
        timeout: Duration,
    ) -> Result<(String, Instant)> {
        let realm = c.params.get("realm").ok_or_else(|| {
            Error::Upstream(format!(
                "upstream {}: Bearer challenge without a realm",
                up.label()
            ))
        })?;
        let mut url = parse_url(realm, up)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = c.params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", c.params.get("scope").map_or(scope, String::as_str));
        }
        let auth = basic(up);
        let mut res = self
            .follow(up, Method::Get, url, None, auth.as_deref(), timeout)
            .await?;
        if !res.status().is_success() {
            return Err(Error::Upstream(format!(
                "upstream {}: its token service answered {}{}",
                up.label(),
                res.status() as u16,
                if auth.is_some() {
                    " (check --upstream-credentials)"
                } else {
                    ""
                }
            )));
        }
        let body = read_small(&mut res, 64 * 1024, timeout)
            .await
            .map_err(|e| {
                Error::Upstream(format!("upstream {}: reading a token: {e}", up.label()))
            })?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            Error::Upstream(format!(
                "upstream {}: its token service sent no JSON",
                up.label()
            ))
        })?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Upstream(format!(
                    "upstream {}: no token in the token service's answer",
                    up.label()
                ))
            })?;
        // Tokens without a lifetime live 60 s (the distribution spec's default); keep a margin.
        let lifetime = v["expires_in"].as_u64().unwrap_or(60).clamp(10, 24 * 3600);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(5));
        Ok((token.to_owned(), until))
    }

    /// One exchange, following redirects; credentials go only to the upstream's own host.
    async fn follow(
        &self,
        up: &Upstream,
        method: Method,
        mut url: Url,
        accept: Option<&str>,
        auth: Option<&str>,
        timeout: Duration,
    ) -> Result<Response> {
        let origin = (
            url.scheme().to_owned(),
            url.host_str().map(str::to_owned),
            url.port_or_known_default(),
        );
        for _ in 0..=MAX_REDIRECTS {
            let same_origin = (
                url.scheme().to_owned(),
                url.host_str().map(str::to_owned),
                url.port_or_known_default(),
            ) == origin;
            let mut req = Request::new(method, url.clone());
            req.insert_header("User-Agent", concat!("atoll/", env!("CARGO_PKG_VERSION")));
            if let Some(a) = accept {
                req.insert_header("Accept", a);
            }
            if let (Some(a), true) = (auth, same_origin) {
                req.insert_header("Authorization", a);
            }
            let res = self
                .http
                .exchange(|| req.clone(), timeout)
                .await
                .map_err(|e| Error::Upstream(format!("upstream {}: {e}", up.label())))?;
            if !res.status().is_redirection() || res.status() == StatusCode::NotModified {
                return Ok(res);
            }
            let location = res
                .header("Location")
                .map(|l| l.as_str().to_owned())
                .ok_or_else(|| {
                    Error::Upstream(format!(
                        "upstream {}: a redirect without a Location",
                        up.label()
                    ))
                })?;
            discard(res).await;
            url = url.join(&location).map_err(|_| {
                Error::Upstream(format!("upstream {}: a redirect to a bad URL", up.label()))
            })?;
            debug!(
                "upstream {} redirects to {}",
                up.label(),
                url.host_str().unwrap_or("?")
            );
        }
        Err(Error::Upstream(format!(
            "upstream {}: more than {MAX_REDIRECTS} redirects",
            up.label()
        )))
    }
}

/// Reads the rest of an answer that is not wanted, so its connection can be reused; a long or
/// slow one is dropped, and its connection with it.
async fn discard(mut res: Response) {
    let _ = read_small(&mut res, DISCARD_BYTES, DISCARD_TIME).await;
}

fn basic(up: &Upstream) -> Option<String> {
    up.credentials.as_ref().map(|(u, p)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    })
}

fn parse_url(s: &str, up: &Upstream) -> Result<Url> {
    Url::parse(s).map_err(|_| Error::Upstream(format!("upstream {}: bad URL {s:?}", up.label())))
}

/// Reads a whole small body (tokens, manifests), bounded in size and time.
pub async fn read_small(
    res: &mut Response,
    limit: usize,
    timeout: Duration,
) -> std::result::Result<Vec<u8>, String> {
    use smol::io::AsyncReadExt;
    let mut body = res.take_body().take(limit as u64 + 1);
    let read = async {
        let mut buf = Vec::new();
        body.read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok(buf)
    };
    let deadline = async {
        Timer::after(timeout).await;
        Err(format!(
            "the body did not arrive within {} s",
            timeout.as_secs_f32()
        ))
    };
    let buf = read.or(deadline).await?;
    if buf.len() > limit {
        return Err(format!("the body is over {limit} bytes"));
    }
    Ok(buf)
}
