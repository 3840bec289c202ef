//! Answers the web page's routes: its static files (with an ETag, so a reload costs a 304), the
//! JSON it reads, and the login URL. The JSON comes from `registry/browse.rs` (run off the
//! executor) plus what the server keeps in memory: counters, the last collection's report, the
//! restrictions the operator set, who is asking.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use http_types::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::route::{UiRoute, TAGS_PER_REPO};
use crate::assets::{self, UiFile};
use crate::auth::Identity;
use crate::error::{Error, Result};
use crate::gc::GcReport;
use crate::http::app::{App, Restrictions};
use crate::http::response::JSON;
use crate::proxy::Upstream;
use crate::registry::browse::{CacheHoldings, UpstreamView};

/// The page runs only its own script and style and talks only to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Answers one web page route for `who` (already allowed to make it).
pub async fn serve(app: &App, req: &Request, route: UiRoute, who: &Identity) -> Result<Response> {
    match route {
        UiRoute::Page => {
            let p = page();
            Ok(file(req, &p.file, &p.csp))
        }
        UiRoute::Asset(name) => assets::ui_file(name)
            .map(|f| file(req, f, CSP))
            .ok_or_else(|| Error::NotFound(format!("no page at /ui/{name}"))),
        UiRoute::Summary => summary(app, who).await,
        UiRoute::Repos { filter, last, n } => {
            let page = app
                .blocking(move |r| r.browse_repos(&filter, last.as_deref(), n, TAGS_PER_REPO))
                .await?;
            Ok(json_response(&page))
        }
        UiRoute::Tags { name, last, n } => {
            let page = app
                .blocking(move |r| r.browse_tags(&name, last.as_deref(), n))
                .await?;
            Ok(json_response(&page))
        }
        UiRoute::Login => Ok(login(app, who)),
    }
}

/// May `who` delete tags from this page? Deletes must be enabled, and with logins on, only a
/// user who logged in may (anonymous clients never write); an open registry lets anyone.
pub fn may_delete(restrictions: &Restrictions, logins: bool, who: &Identity) -> bool {
    !restrictions.read_only
        && !restrictions.no_delete
        && (!logins || matches!(who, Identity::User(_)))
}

/// The share of cache lookups answered from the cache; `None` before the first.
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// The page as served: its stylesheet inlined, because a stylesheet blocks the first paint
/// and a separate one costs a request (a revalidation on every reload) before anything shows;
/// the CSP allows exactly that style by its hash.
struct Page {
    file: UiFile,
    csp: String,
}

const STYLESHEET_LINK: &str = r#"<link rel="stylesheet" href="/ui/app.css">"#;

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = assets::ui_file("index.html").expect("index.html is embedded");
        let css = assets::ui_file("app.css")
            .expect("app.css is embedded")
            .text;
        assert!(
            html.text.contains(STYLESHEET_LINK),
            "index.html links app.css"
        );
        let text = html
            .text
            .replace(STYLESHEET_LINK, &format!("<style>{css}</style>"));
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(css));
        Page {
            file: UiFile {
                text: Box::leak(text.into_boxed_str()),
                ..*html
            },
            csp: CSP.replace(
                "style-src 'self'",
                &format!("style-src 'self' 'sha256-{hash}'"),
            ),
        }
    })
}

/// A static file: `no-cache` with a content hash as ETag, so browsers revalidate and get a 304.
fn file(req: &Request, f: &UiFile, csp: &str) -> Response {
    let tag = format!(
        "\"{}\"",
        &blake3::hash(f.text.as_bytes()).to_hex().as_str()[..20]
    );
    let fresh = req
        .header("If-None-Match")
        .is_some_and(|v| v.as_str().split(',').any(|t| t.trim() == tag));
    let mut res = if fresh {
        Response::new(StatusCode::NotModified)
    } else {
        let mut res = Response::new(StatusCode::Ok);
        res.insert_header("Content-Type", f.content_type);
        res.set_body(f.text);
        res
    };
    res.insert_header("ETag", tag);
    res.insert_header("Cache-Control", "no-cache");
    secure(&mut res, csp);
    res
}

fn secure(res: &mut Response, csp: &str) {
    res.insert_header("Content-Security-Policy", csp);
    res.insert_header("X-Content-Type-Options", "nosniff");
    res.insert_header("Referrer-Policy", "no-referrer");
}

fn json_response(body: &impl Serialize) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", JSON);
    res.insert_header("Cache-Control", "no-store");
    secure(&mut res, CSP);
    res.set_body(serde_json::to_string(body).unwrap_or_else(|_| "{}".into()));
    res
}

async fn summary(app: &App, who: &Identity) -> Result<Response> {
    let (holdings, disk, cache) = app
        .blocking(|r| {
            let h = r.holdings()?;
            let disk = r.disk(&h);
            Ok((h, disk, r.cache_holdings()?))
        })
        .await?;
    let m = &app.metrics;
    let last_gc = app
        .last_gc
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let logins = app.auth.is_some();
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "now": crate::clock::now(),
        "started_at": app.started_at,
        "user": match who { Identity::User(u) => Some(u.as_str()), Identity::Anonymous => None },
        "logins": logins,
        "read_only": app.restrictions.read_only,
        "can_delete": may_delete(&app.restrictions, logins, who),
        "holdings": {
            "repositories": holdings.repositories,
            "manifests": holdings.manifests,
            "tags": holdings.tags,
            "blobs": holdings.blobs,
        },
        "disk": disk,
        "gc": gc_json(last_gc.as_ref(), m.gc_last_run()),
        "cache": cache_json(app, cache),
    });
    Ok(json_response(&body))
}

/// The pull-through cache: its configuration, what the index holds from each upstream, the
/// server's counters, and when eviction runs next.
fn cache_json(app: &App, held: CacheHoldings) -> Value {
    let m = &app.metrics;
    let (hits, misses) = (m.cache_hits.load(Relaxed), m.cache_misses.load(Relaxed));
    let proxy = app.proxy.as_deref();
    let configured = proxy.map_or(&[][..], |p| &p.config.upstreams.list[..]);
    json!({
        "configured": proxy.is_some(),
        "upstreams": upstream_views(configured, &held.upstreams),
        "repositories": held.repositories,
        "bytes_cached": held.bytes,
        "max_bytes": proxy.and_then(|p| p.config.max_bytes),
        "ttl_seconds": proxy.map(|p| p.config.ttl),
        "fetching": proxy.map_or(0, |p| p.fills_in_progress()),
        "hits": hits,
        "misses": misses,
        "hit_rate": hit_rate(hits, misses),
        "evictions": m.cache_evictions.load(Relaxed),
        "evicted_bytes": m.cache_evicted_bytes.load(Relaxed),
        "upstream_bytes": m.upstream_bytes.load(Relaxed),
        "next_eviction": proxy
            .map(|p| p.next_eviction.load(Relaxed))
            .filter(|&t| t > 0),
    })
}

/// The upstreams the page lists: the configured ones in the operator's order, each with what
/// the cache holds from it (content is kept under the upstream's label), then any upstream the
/// index still holds content from that is no longer configured (eviction lets that go).
pub fn upstream_views(configured: &[Upstream], held: &[UpstreamView]) -> Vec<Value> {
    let holding = |label: &str| held.iter().find(|h| h.upstream == label);
    let mut out: Vec<Value> = configured
        .iter()
        .map(|u| {
            let h = holding(u.label());
            json!({
                "upstream": u.label(),
                "url": u.url,
                "default": u.key.is_empty(),
                "configured": true,
                "repositories": h.map_or(0, |h| h.repositories),
                "bytes": h.map_or(0, |h| h.bytes),
            })
        })
        .collect();
    for h in held {
        if !configured.iter().any(|u| u.label() == h.upstream) {
            out.push(json!({
                "upstream": h.upstream,
                "url": null,
                "default": false,
                "configured": false,
                "repositories": h.repositories,
                "bytes": h.bytes,
            }));
        }
    }
    out
}

/// The last collection this server ran, as the page shows it; `null` before the first.
pub fn gc_json(report: Option<&GcReport>, at: Option<i64>) -> Value {
    let Some(r) = report else {
        return Value::Null;
    };
    json!({
        "at": at,
        "dry_run": r.dry_run,
        "kept_manifests": r.kept_manifests,
        "kept_blobs": r.kept_blobs,
        "kept_bytes": r.kept_bytes,
        "deleted_manifests": r.deleted_manifests.len(),
        "deleted_blobs": r.deleted_blobs + r.orphan_files,
        "freed_bytes": r.deleted_bytes + r.orphan_bytes,
        "purged_uploads": r.purged_uploads,
        "errors": r.errors.len(),
        "elapsed_ms": r.elapsed_ms,
        "summary": r.summary(),
    })
}

/// `/login`: a browser reading anonymously (`--anonymous-pull`) comes here to sign in. Without
/// credentials it gets the Basic challenge (the API's own challenge is then a Bearer one, which
/// browsers do not answer); with them, it goes back to the page. The challenge is on a path at
/// the root, so the browser then sends the credentials with every request to this server,
/// deletes under `/v2/` included.
fn login(app: &App, who: &Identity) -> Response {
    if app.auth.is_some() && *who == Identity::Anonymous {
        let mut res = Response::new(StatusCode::Unauthorized);
        res.insert_header("WWW-Authenticate", "Basic realm=\"atoll\"");
        res.insert_header("Content-Type", "text/plain; charset=utf-8");
        res.set_body("Signing in needs a user name and password of this registry.\n");
        return res;
    }
    let mut res = Response::new(StatusCode::SeeOther);
    res.insert_header("Location", "/");
    res.insert_header("Cache-Control", "no-store");
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_is_offered_only_when_enabled_and_allowed() {
        let on = Restrictions::default();
        let read_only = Restrictions {
            read_only: true,
            no_delete: false,
        };
        let no_delete = Restrictions {
            read_only: false,
            no_delete: true,
        };
        let alice = Identity::User("alice".into());
        let anon = Identity::Anonymous;
        assert!(may_delete(&on, false, &anon), "an open registry");
        assert!(may_delete(&on, true, &alice));
        assert!(!may_delete(&on, true, &anon), "anonymous never writes");
        for p in [&read_only, &no_delete] {
            assert!(!may_delete(p, true, &alice));
            assert!(!may_delete(p, false, &anon));
        }
    }

    #[test]
    fn hit_rate_waits_for_the_first_lookup() {
        assert_eq!(hit_rate(0, 0), None);
        assert_eq!(hit_rate(3, 1), Some(0.75));
    }

    #[test]
    fn upstreams_list_the_configured_ones_then_those_only_the_index_remembers() {
        let up = |key: &str, url: &str| Upstream {
            key: key.into(),
            url: url.into(),
            credentials: None,
        };
        let held = |label: &str, repositories, bytes| UpstreamView {
            upstream: label.into(),
            repositories,
            bytes,
        };
        let configured = [
            up("", "https://registry-1.docker.io"),
            up("ghcr.io", "https://ghcr.io"),
        ];
        let v = upstream_views(
            &configured,
            &[held("ghcr.io", 2, 200), held("quay.io", 1, 50)],
        );
        let labels: Vec<_> = v.iter().map(|u| u["upstream"].clone()).collect();
        assert_eq!(
            labels,
            vec![
                json!("registry-1.docker.io"),
                json!("ghcr.io"),
                json!("quay.io")
            ]
        );
        assert_eq!(v[0]["repositories"], 0, "nothing pulled through it yet");
        assert_eq!(v[0]["default"], true);
        assert_eq!(v[1]["bytes"], 200);
        assert_eq!(v[2]["configured"], false);
        assert_eq!(v[2]["url"], Value::Null);
    }

    #[test]
    fn the_last_collection_reads_as_freed_bytes() {
        assert_eq!(gc_json(None, None), Value::Null);
        let r = GcReport {
            deleted_manifests: vec!["a@sha256:1".into()],
            deleted_blobs: 2,
            deleted_bytes: 100,
            orphan_files: 1,
            orphan_bytes: 20,
            ..GcReport::default()
        };
        let v = gc_json(Some(&r), Some(1234));
        assert_eq!(v["at"], 1234);
        assert_eq!(v["deleted_manifests"], 1);
        assert_eq!(v["deleted_blobs"], 3);
        assert_eq!(v["freed_bytes"], 120);
    }
}
