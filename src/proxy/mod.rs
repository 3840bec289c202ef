//! The pull-through cache: names atoll does not hold are fetched from upstream registries,
//! kept, and served from the cache from then on, also when the uplink is gone.
//!
//! - `upstreams.rs`: which upstream serves a name (pure).
//! - `client.rs`: talking to upstreams (token flow, redirects, deadlines), over `net`'s
//!   pooled connections.
//! - `challenge.rs`: `WWW-Authenticate` parsing (pure).
//! - `fetch.rs`: a blob through the cache: fetched once, bounded, verified, published.
//! - `fill.rs`: one fetch per blob, streamed to every client as it arrives.
//! - `bounds.rs`: how many bytes a blob's fetch may read (pure).
//! - `freshness.rs`: what a pull by tag does with the cache and the upstream (pure).
//!
//! What the cache lets go is a policy beside garbage collection's (`gc/evict.rs`), applied by
//! `registry/cache.rs`; the proxy schedules it.
//!
//! Freshness (`freshness.rs`, pure): a pull by digest is served from the cache when present; a
//! pull by tag asks the upstream, and serves the cached copy while the upstream cannot answer. A
//! multi-arch pull caches the index and only the platforms actually pulled.

pub mod bounds;
pub mod challenge;
pub mod client;
pub mod fetch;
pub mod fill;
pub mod freshness;
pub mod upstreams;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_types::{Method, StatusCode};
use log::{info, warn};
use smol::Executor;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::metrics::Metrics;
use crate::reference::{Reference, RepoName, Tag};
use crate::registry::{ManifestHit, Provenance, Registry};
use client::Client;
pub use fill::FillReader;
use fill::Fills;
use freshness::{Probed, Then};
pub use upstreams::{Route, Upstream, Upstreams};

/// Every manifest media type atoll serves, for upstream requests (without it, some registries
/// answer with the long-gone schema1).
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// Deadline for an upstream's answer to a request for content (a manifest, a blob's head).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// A blob download that makes no progress for this long has failed.
const STALL: Duration = Duration::from_secs(30);
/// Bytes of a blob read from the upstream per step (one is written while the next is read).
const CHUNK: usize = 256 * 1024;

/// The cache's settings.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    pub upstreams: Upstreams,
    /// How long a pull by tag waits for the upstream before serving the cached copy.
    pub tag_timeout: Duration,
    pub ttl: i64,
    pub max_bytes: Option<u64>,
    pub pins: Vec<String>,
    /// Seconds between eviction runs.
    pub evict_interval: i64,
}

/// What a blob request through the cache gets.
pub enum BlobAnswer {
    /// The blob is coming from upstream: stream it from the fill.
    Stream {
        size: Option<u64>,
        reader: FillReader,
    },
    /// A HEAD for a blob not cached: what the upstream says.
    Head { size: Option<u64> },
    /// Another node of the cluster fetched it meanwhile: the store has it now.
    Stored,
}

pub struct Proxy {
    pub config: ProxyConfig,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    executor: Arc<Executor<'static>>,
    client: Client,
    fills: Fills,
    /// This process among a cluster's nodes, in fill leases (`fetch.rs`).
    node: String,
    cooldown: freshness::Cooldown,
    /// When eviction runs next (Unix seconds), for the web page.
    pub next_eviction: AtomicI64,
}

impl Proxy {
    pub fn new(
        config: ProxyConfig,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        executor: Arc<Executor<'static>>,
    ) -> Proxy {
        Proxy {
            config,
            registry,
            metrics,
            executor,
            client: Client::new(),
            fills: Fills::default(),
            node: crate::ids::new_id(),
            cooldown: freshness::Cooldown::default(),
            next_eviction: AtomicI64::new(0),
        }
    }

    fn upstream(&self, route: &Route) -> &Upstream {
        &self.config.upstreams.list[route.upstream]
    }

    /// Sends `method` for `/v2/<remote name>/<what>` to the route's upstream, logging in for
    /// pull access to that repository as needed.
    async fn ask(
        &self,
        route: &Route,
        method: Method,
        what: &str,
        accept: Option<&str>,
        timeout: Duration,
    ) -> Result<http_types::Response> {
        let path = format!("/v2/{}/{what}", route.remote);
        let scope = format!("repository:{}:pull", route.remote);
        (self.client)
            .send(self.upstream(route), method, &path, accept, &scope, timeout)
            .await
    }

    /// An upstream's answer other than 200 as an error: `missing` for a 404, else the
    /// upstream's failure naming `what` was asked for.
    fn expect_ok(
        &self,
        route: &Route,
        status: StatusCode,
        what: &str,
        missing: impl FnOnce() -> Error,
    ) -> Result<()> {
        match status {
            StatusCode::Ok => Ok(()),
            StatusCode::NotFound => Err(missing()),
            s => Err(Error::Upstream(format!(
                "upstream {} answered {} for {what}",
                self.upstream(route).label(),
                s as u16
            ))),
        }
    }

    /// Whether a request for `name` goes through the cache. A name pushed here never does.
    /// A blob GET does whether or not a manifest was pulled first (a client may know the
    /// digest already; the blob's size is then unknown and `bounds.rs` caps the fetch). A blob
    /// HEAD (`blob_head`) goes through only for repositories already cached: a client pushing
    /// to a new name HEADs each blob first, and must neither wait on an upstream nor be told
    /// that a blob it has not pushed is here. Blocking.
    pub fn route(
        &self,
        name: &RepoName,
        ns: Option<&str>,
        blob_head: bool,
    ) -> Result<Option<Route>> {
        if self.config.upstreams.is_empty() || self.registry.provenance(name)? == Provenance::Local
        {
            return Ok(None);
        }
        let Some(route) = self.config.upstreams.route(name, ns) else {
            return Ok(None);
        };
        if blob_head
            && !matches!(
                self.registry.provenance(&route.local)?,
                Provenance::Cached(_)
            )
        {
            return Ok(None);
        }
        Ok(Some(route))
    }

    // ---- manifests ----

    pub async fn manifest(
        &self,
        route: &Route,
        reference: &Reference,
        head: bool,
    ) -> Result<ManifestHit> {
        match reference {
            Reference::Digest(d) => {
                if let Some(hit) = self.cached_manifest(route, reference, head).await? {
                    self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(hit);
                }
                self.fetch_manifest(route, &d.to_string(), Some(d), None, head)
                    .await
            }
            Reference::Tag(t) => self.manifest_by_tag(route, t, head).await,
        }
    }

    async fn cached_manifest(
        &self,
        route: &Route,
        reference: &Reference,
        head: bool,
    ) -> Result<Option<ManifestHit>> {
        let (reg, local, r) = (
            self.registry.clone(),
            route.local.clone(),
            reference.clone(),
        );
        match smol::unblock(move || reg.manifest(&local, &r, !head)).await {
            Ok(hit) => Ok(Some(hit)),
            Err(Error::NameUnknown(_) | Error::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn manifest_by_tag(&self, route: &Route, tag: &Tag, head: bool) -> Result<ManifestHit> {
        let cached = self
            .cached_manifest(route, &Reference::Tag(tag.clone()), head)
            .await?;
        let up = self.upstream(route);
        let no_such_tag =
            || Error::ManifestUnknown(format!("{tag} (upstream {} has no such tag)", up.label()));
        let resting = self.cooldown.resting(route.upstream, Instant::now());
        let probed = match freshness::first(cached.is_some(), resting) {
            freshness::First::Fetch => {
                let hit = self
                    .fetch_manifest(route, tag.as_str(), None, Some(tag), head)
                    .await;
                if hit.is_ok() {
                    self.cooldown.answered(route.upstream);
                }
                return hit.map_err(|e| match e {
                    Error::ManifestUnknown(_) => no_such_tag(),
                    e => e,
                });
            }
            freshness::First::WithoutUpstream => Probed::Failed("it failed moments ago".into()),
            freshness::First::Probe => self.probe_tag(route, tag).await,
        };
        if matches!(probed, Probed::Current(_) | Probed::Gone) {
            self.cooldown.answered(route.upstream);
        }
        let cached_digest = cached.as_ref().and_then(|hit| hit.digest.parse().ok());
        match freshness::after_probe(probed, cached_digest.as_ref()) {
            Then::ServeCached => {
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(cached.expect("a cached digest"))
            }
            Then::Moved(d) => {
                // The tag moved to a manifest the cache may already hold.
                let held = self
                    .cached_manifest(route, &Reference::Digest(d.clone()), head)
                    .await?;
                let Some(hit) = held else {
                    return self
                        .fetch_manifest(route, tag.as_str(), Some(&d), Some(tag), head)
                        .await;
                };
                let (reg, local, t, key) = (
                    self.registry.clone(),
                    route.local.clone(),
                    tag.clone(),
                    d.to_string(),
                );
                smol::unblock(move || reg.cache_tag(&local, &t, &key)).await?;
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(hit)
            }
            Then::Fetch => {
                self.fetch_manifest(route, tag.as_str(), None, Some(tag), head)
                    .await
            }
            Then::NoSuchTag => Err(no_such_tag()),
            Then::Fallback(why) => {
                if !resting {
                    self.cooldown.failed(route.upstream, Instant::now());
                }
                match cached {
                    Some(hit) => {
                        warn!("{}:{tag}: serving the cached copy ({why})", route.local);
                        self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                        Ok(hit)
                    }
                    None => Err(Error::Upstream(format!(
                        "{}:{tag} is not cached and upstream {} cannot be asked: {why}",
                        route.local,
                        up.label()
                    ))),
                }
            }
        }
    }

    /// HEADs a tag upstream: its current digest, gone, or why it could not say.
    async fn probe_tag(&self, route: &Route, tag: &Tag) -> Probed<Digest> {
        let path = format!("manifests/{tag}");
        let timeout = self.config.tag_timeout;
        match self
            .ask(route, Method::Head, &path, Some(ACCEPT), timeout)
            .await
        {
            Ok(res) if res.status() == StatusCode::Ok => Probed::Current(
                res.header("Docker-Content-Digest")
                    .and_then(|h| h.as_str().parse().ok()),
            ),
            Ok(res) if res.status() == StatusCode::NotFound => Probed::Gone,
            Ok(res) => Probed::Failed(format!("it answered {}", res.status() as u16)),
            Err(e) => Probed::Failed(e.to_string()),
        }
    }

    /// GETs a manifest (by tag or digest), checks its digest, caches it (with `tag`).
    async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &str,
        expected: Option<&Digest>,
        tag: Option<&Tag>,
        head: bool,
    ) -> Result<ManifestHit> {
        let up = self.upstream(route);
        let mut res = self
            .ask(
                route,
                Method::Get,
                &format!("manifests/{reference}"),
                Some(ACCEPT),
                FETCH_TIMEOUT,
            )
            .await
            .inspect_err(|_| self.cooldown.failed(route.upstream, Instant::now()))?;
        self.expect_ok(route, res.status(), reference, || {
            Error::ManifestUnknown(reference.to_owned())
        })?;
        let content_type = res.header("Content-Type").map(|h| h.as_str().to_owned());
        let body = client::read_small(&mut res, MAX_MANIFEST_BYTES, FETCH_TIMEOUT)
            .await
            .map_err(|e| {
                Error::Upstream(format!(
                    "upstream {}: manifest {reference}: {e}",
                    up.label()
                ))
            })?;
        // What the body must hash to: the digest asked for or probed, else the one the
        // upstream names in its answer.
        let expected = expected.cloned().or_else(|| {
            res.header("Docker-Content-Digest")
                .and_then(|h| h.as_str().parse::<Digest>().ok())
        });
        let algorithm = expected
            .as_ref()
            .map_or(crate::digest::Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &body);
        if let Some(e) = expected.as_ref().filter(|e| **e != digest) {
            return Err(Error::Upstream(format!(
                "upstream {} sent a manifest with digest {digest} for {e}",
                up.label()
            )));
        }
        let (reg, local, label, d, t) = (
            self.registry.clone(),
            route.local.clone(),
            up.label().to_owned(),
            digest.clone(),
            tag.cloned(),
        );
        let stored = body.clone();
        let parsed = smol::unblock(move || {
            reg.cache_manifest(
                &local,
                &label,
                &d,
                &stored,
                content_type.as_deref(),
                t.as_ref(),
            )
        })
        .await?;
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .upstream_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        info!("cached {}@{digest} from {}", route.local, up.label());
        Ok(ManifestHit {
            digest: digest.to_string(),
            media_type: parsed.media_type,
            size: body.len() as u64,
            subject: parsed.subject.map(|s| s.digest.to_string()),
            body: (!head).then_some(body),
        })
    }

    /// The upstream's tags (passed through), or the cached ones when it cannot be asked.
    pub async fn tags(&self, route: &Route, query: Option<&str>) -> Result<Option<Vec<u8>>> {
        if self.cooldown.resting(route.upstream, Instant::now()) {
            return Ok(None);
        }
        let what = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("tags/list?{q}"),
            None => "tags/list".to_owned(),
        };
        let res = self
            .ask(route, Method::Get, &what, None, self.config.tag_timeout)
            .await;
        match res {
            Ok(mut r) if r.status() == StatusCode::Ok => {
                Ok(client::read_small(&mut r, 4 << 20, FETCH_TIMEOUT)
                    .await
                    .ok())
            }
            Ok(_) => Ok(None),
            Err(_) => {
                self.cooldown.failed(route.upstream, Instant::now());
                Ok(None)
            }
        }
    }

    /// Blob fetches in progress.
    pub fn fills_in_progress(&self) -> usize {
        self.fills.len()
    }

    /// Closes upstream connections that have been idle too long (see `pool.rs`).
    pub fn close_idle_connections(&self, now: Instant) {
        let closed = self.client.close_idle(now);
        if closed > 0 {
            log::debug!("closed {closed} idle upstream connections");
        }
    }

    /// One eviction run, logged; run off the executor.
    pub fn evict(&self, now: i64) -> Result<crate::registry::Evicted> {
        let policy = crate::gc::evict::Policy {
            ttl: self.config.ttl,
            max_bytes: self.config.max_bytes,
        };
        let out = self.registry.evict(&policy, &self.config.pins, now)?;
        if out.manifests > 0 {
            info!(
                "evicted {} cached manifests, freeing {}; the cache holds {}",
                out.manifests,
                crate::units::human_bytes(out.bytes),
                crate::units::human_bytes(out.held)
            );
        } else if out.bytes > 0 {
            info!(
                "freed {} of evicted blobs that were in use at the last run; the cache holds {}",
                crate::units::human_bytes(out.bytes),
                crate::units::human_bytes(out.held)
            );
        }
        self.metrics
            .cache_evictions
            .fetch_add(out.manifests, Ordering::Relaxed);
        self.metrics
            .cache_evicted_bytes
            .fetch_add(out.bytes, Ordering::Relaxed);
        self.next_eviction
            .store(now + self.config.evict_interval, Ordering::Relaxed);
        Ok(out)
    }
}
