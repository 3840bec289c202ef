//! Blobs through the cache: one fetch per digest however many clients ask (`fill.rs`), written
//! through the store's ingest as it streams to them, bounded (`bounds.rs`), verified before the
//! last byte reaches anyone, published only then; in a cluster, one node fetches a blob and
//! the others wait for it (a lease in the shared index).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_types::Method;
use log::{info, warn};
use smol::future::FutureExt;
use smol::io::AsyncReadExt;
use smol::Timer;

use super::fill::Fill;
use super::{bounds, BlobAnswer, Proxy, Route, CHUNK, FETCH_TIMEOUT, STALL};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{Finished, Ingest, Pipeline};

/// How long a node's lease on fetching a blob lasts unless renewed: how long the other nodes
/// wait for a node that died mid-fetch before one of them takes over.
const LEASE: Duration = Duration::from_secs(30);
/// How often a fetching node renews its lease.
const RENEW: Duration = Duration::from_secs(10);
/// How often a node waiting for another's fetch looks whether the blob has landed.
const POLL: Duration = Duration::from_millis(250);

impl Proxy {
    /// A blob the cache does not hold yet: joins (or starts) its fetch.
    pub async fn blob(
        self: &Arc<Self>,
        route: &Route,
        digest: &Digest,
        head: bool,
    ) -> Result<BlobAnswer> {
        if head {
            if let Some(f) = self.fills.get(digest) {
                return Ok(BlobAnswer::Head {
                    size: f.size().await?,
                });
            }
            let res = self.ask_blob(route, Method::Head, digest).await?;
            return Ok(BlobAnswer::Head {
                size: content_length(&res),
            });
        }
        // In a cluster, one node fetches a blob however many are asked: the others wait for
        // it to land in the store (or for that node's lease to lapse, and take it over).
        if self.fills.get(digest).is_none()
            && !self.lease(digest).await?
            && self.await_other_node(digest).await?
        {
            return Ok(BlobAnswer::Stored);
        }
        let mut started = None;
        let (fill, new) = self.fills.join_or_start(digest, || {
            // Two small file operations on the local disk: the temporary file the fetch
            // writes, and the handle every reader shares.
            let ingest = self.registry.ingest(digest.algorithm())?;
            let reader = ingest.reader()?;
            started = Some(ingest);
            Ok(Fill::new(reader))
        })?;
        if let (true, Some(ingest)) = (new, started) {
            self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
            let (me, route, digest, f) =
                (self.clone(), route.clone(), digest.clone(), fill.clone());
            self.executor
                .spawn(async move { me.run_fill(route, digest, f, ingest).await })
                .detach();
        } else {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        let size = fill.size().await?;
        Ok(BlobAnswer::Stream {
            size,
            reader: fill.reader(),
        })
    }

    /// Takes, or renews, this node's lease on fetching `digest` (always granted on one box).
    async fn lease(&self, digest: &Digest) -> Result<bool> {
        let (reg, d, node) = (self.registry.clone(), digest.clone(), self.node.clone());
        smol::unblock(move || reg.lease_fill(&d, &node, LEASE.as_secs() as i64)).await
    }

    /// Another node fetches `digest`: waits until the blob is in the store (true), or until
    /// that node's lease ended or lapsed without it and this node took it over (false).
    async fn await_other_node(&self, digest: &Digest) -> Result<bool> {
        loop {
            Timer::after(POLL).await;
            let (reg, d) = (self.registry.clone(), digest.clone());
            if smol::unblock(move || reg.holds_blob(&d)).await? {
                return Ok(true);
            }
            if self.lease(digest).await? {
                return Ok(false);
            }
        }
    }

    /// Fetches a blob into its fill, verifies it, and publishes it to the cache. Owned by the
    /// server's executor, not by any client: it finishes for the others when one hangs up.
    async fn run_fill(
        self: Arc<Self>,
        route: Route,
        digest: Digest,
        fill: Arc<Fill>,
        ingest: Ingest,
    ) {
        // The lease stays this node's while it fetches; dropping the task stops the renewals.
        let renewals = {
            let (me, d) = (self.clone(), digest.clone());
            self.executor.spawn(async move {
                loop {
                    Timer::after(RENEW).await;
                    if let Err(e) = me.lease(&d).await {
                        warn!("renewing the lease on fetching {d}: {e}");
                    }
                }
            })
        };
        let outcome = match self.fetch_into(&route, &digest, &fill, ingest).await {
            Ok(Finished {
                len: size, staged, ..
            }) => {
                // Hashed and matching: the readers get the last byte now, not after the commit.
                fill.verified();
                let (reg, local, label, d) = (
                    self.registry.clone(),
                    route.local.clone(),
                    self.upstream(&route).label().to_owned(),
                    digest.clone(),
                );
                smol::unblock(move || reg.cache_blob(&local, &label, &d, size, staged)).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => info!(
                "cached {}@{digest} from {}",
                route.local,
                self.upstream(&route).label()
            ),
            Err(e) => {
                warn!("fetching {}@{digest}: {e}; nothing was cached", route.local);
                fill.failed(e.to_string());
            }
        }
        self.fills.remove(&digest);
        drop(renewals);
        let (reg, d, node) = (self.registry.clone(), digest.clone(), self.node.clone());
        if let Err(e) = smol::unblock(move || reg.end_fill_lease(&d, &node)).await {
            warn!("ending the lease on fetching {digest}: {e} (it lapses by itself)");
        }
    }

    /// Fetches a blob into `fill` through `ingest` and checks it: at most the bytes
    /// `bounds.rs` allows, exactly as many as the descriptor or the upstream says, hashing to
    /// `digest`. Returns it finished (fsynced), ready to publish.
    async fn fetch_into(
        &self,
        route: &Route,
        digest: &Digest,
        fill: &Fill,
        mut ingest: Ingest,
    ) -> Result<Finished> {
        let up = self.upstream(route);
        let (reg, local, d) = (self.registry.clone(), route.local.clone(), digest.clone());
        let descriptor = smol::unblock(move || reg.descriptor_size(&local, &d)).await?;
        let mut res = self.ask_blob(route, Method::Get, digest).await?;
        let cap = bounds::cap(self.config.max_bytes);
        let bound = bounds::bound(descriptor, content_length(&res), cap).map_err(|why| {
            Error::Upstream(format!("upstream {} {why} for {digest}", up.label()))
        })?;
        // With no Content-Length, clients still get the descriptor's: it is what must arrive.
        fill.set_size(bound.exact());
        ingest.limit(bound.max);
        let mut body = res.take_body();
        let mut pipe = Pipeline::new(ingest);
        loop {
            let mut buf = pipe.buffer(CHUNK);
            // Never more than one byte past the bound: that byte is enough to fail.
            let room = usize::try_from(pipe.room().saturating_add(1)).unwrap_or(usize::MAX);
            let want = CHUNK.min(room);
            let received = pipe.written();
            let read =
                async { body.read(&mut buf[..want]).await.map_err(|e| e.to_string()) }.or(async {
                    Timer::after(STALL).await;
                    Err(format!("no data for {} s", STALL.as_secs()))
                });
            // The chunk before is written while this one is read; readers get it as soon as
            // it is in the file, not when more arrives.
            let settle = async {
                let wrote = pipe.wait().await?;
                fill.advance(wrote);
                self.metrics
                    .upstream_bytes
                    .fetch_add(wrote, Ordering::Relaxed);
                Ok::<_, Error>(())
            };
            let (read, settled) = smol::future::zip(read, settle).await;
            settled?;
            let n = read.map_err(|e| {
                Error::Upstream(format!(
                    "upstream {} broke off {digest} after {received} bytes: {e}",
                    up.label()
                ))
            })?;
            if n == 0 {
                break;
            }
            pipe.write(buf, n).map_err(|o| {
                Error::Upstream(format!(
                    "upstream {} sent more of {digest} than the {} bytes {}",
                    up.label(),
                    o.allowed,
                    bound.why()
                ))
            })?;
        }
        pipe.flush().await?;
        let ingest = pipe.into_ingest().await;
        let received = ingest.written();
        if let Some(len) = bound.exact().filter(|&len| len != received) {
            return Err(Error::Upstream(format!(
                "upstream {} sent {received} of the {len} bytes of {digest} ({} {len})",
                up.label(),
                bound.why()
            )));
        }
        let (label, d) = (up.label().to_owned(), digest.clone());
        smol::unblock(move || {
            ingest.finish_as(&d, |got| {
                Error::Upstream(format!(
                    "upstream {label} sent content with digest {got} for {d}"
                ))
            })
        })
        .await
    }

    /// `method` for the blob upstream; anything but 200 is an error (404: `BLOB_UNKNOWN`).
    async fn ask_blob(
        &self,
        route: &Route,
        method: Method,
        digest: &Digest,
    ) -> Result<http_types::Response> {
        let path = format!("blobs/{digest}");
        let res = self.ask(route, method, &path, None, FETCH_TIMEOUT).await?;
        self.expect_ok(route, res.status(), &digest.to_string(), || {
            Error::BlobUnknown(digest.clone())
        })?;
        Ok(res)
    }
}

fn content_length(res: &http_types::Response) -> Option<u64> {
    res.header("Content-Length")
        .and_then(|v| v.as_str().trim().parse().ok())
}
