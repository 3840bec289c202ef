//! Handlers for reads that go through the pull-through cache: a manifest, a blob or a tag list
//! of a name an upstream serves. Each returns `None` when the request is not the cache's (no
//! upstream, or a name pushed here), and the regular handler answers it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_types::{Body, Request, Response, StatusCode};
use serde_json::Value;
use smol::io::{AsyncBufRead, AsyncRead};

use super::app::App;
use super::conn::Flusher;
use super::handlers::{get_blob, list_tags, manifest_response};
use super::response::{self, DOCKER_CONTENT_DIGEST, JSON};
use super::route::Page;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::proxy::{BlobAnswer, FillReader, Proxy, Route};
use crate::reference::{Reference, RepoName};

/// The cache's route for this request, if it has one. `?ns=` is containerd's way of naming
/// the registry it means.
async fn route(
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

pub async fn manifest(
    app: &App,
    req: &Request,
    name: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Option<Response>> {
    let Some((proxy, route)) = route(app, name, req, false).await? else {
        return Ok(None);
    };
    let hit = proxy.manifest(&route, reference, head).await?;
    Ok(Some(manifest_response(hit)))
}

pub async fn blob(
    app: &App,
    req: &Request,
    name: &RepoName,
    digest: &Digest,
    head: bool,
) -> Result<Option<Response>> {
    let Some((proxy, route)) = route(app, name, req, head).await? else {
        return Ok(None);
    };
    // Cached already: the regular answer, from the cache's repository.
    match get_blob(
        &app.registry,
        req,
        route.local.clone(),
        digest.clone(),
        head,
    )
    .await
    {
        Err(Error::BlobUnknown(_)) => {}
        done => {
            if done.is_ok() {
                app.metrics
                    .cache_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return done.map(Some);
        }
    }
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", "application/octet-stream");
    res.insert_header(DOCKER_CONTENT_DIGEST, digest.to_string());
    match proxy.blob(&route, digest, head).await? {
        BlobAnswer::Head { size } => res.set_body(match size {
            Some(n) => response::head_body(n),
            None => Body::empty(),
        }),
        // A blob on its way from upstream: sent as it arrives (a Range is not honoured, as
        // HTTP allows; the client gets the whole blob).
        BlobAnswer::Stream { size, reader } => {
            let reader = Streamed {
                reader,
                flusher: req.ext().get::<Flusher>().cloned(),
            };
            res.set_body(match size {
                Some(n) => response::sized_reader(reader, n),
                None => Body::from_reader(reader, None),
            })
        }
    }
    Ok(Some(res))
}

pub async fn tags(
    app: &App,
    req: &Request,
    name: &RepoName,
    page: &Page,
) -> Result<Option<Response>> {
    let Some((proxy, route)) = route(app, name, req, false).await? else {
        return Ok(None);
    };
    if let Some(body) = proxy.tags(&route, req.url().query()).await? {
        if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
            if v.get("tags").is_some() {
                v["name"] = Value::String(name.to_string());
                return Ok(Some(response::json_body(StatusCode::Ok, JSON, &v)));
            }
        }
    }
    // The upstream cannot be asked: the tags the cache holds.
    list_tags(&app.registry, route.local, page.clone())
        .await
        .map(Some)
}

/// A blob read as its fill arrives. Whenever the reader has caught up with the fetch, what the
/// client was given is sent at once: otherwise the connection would hold it until 256 KiB had
/// gathered, and a client's first byte would wait on the upstream's next quarter megabyte.
struct Streamed {
    reader: FillReader,
    flusher: Option<Flusher>,
}

impl Streamed {
    fn after_read(&self) {
        if let Some(f) = self.flusher.as_ref().filter(|_| self.reader.caught_up()) {
            f.flush_after_next_write();
        }
    }
}

impl AsyncRead for Streamed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let read = Pin::new(&mut self.reader).poll_read(cx, out);
        if matches!(read, Poll::Ready(Ok(n)) if n > 0) {
            self.after_read();
        }
        read
    }
}

impl AsyncBufRead for Streamed {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.reader).consume(amt);
        self.after_read();
    }
}
