//! Blobs: GET and HEAD, and DELETE. A blob is read from the store (a Range honoured; on plain
//! TCP sent by the connection's task itself, `direct.rs`), or, for a name an upstream serves and
//! a blob the cache does not hold yet, streamed from the proxy's fetch as it arrives. Uses
//! `cache.rs`; imports nothing else from the handlers.

use std::io::{self, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http_types::{Body, Request, Response, StatusCode};
use smol::io::{AsyncBufRead, AsyncRead};

use super::cache;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::http::app::App;
use crate::http::conn::Flusher;
use crate::http::direct::{self, Direct};
use crate::http::file_body::FileBody;
use crate::http::response::{self, DOCKER_CONTENT_DIGEST};
use crate::proxy::{BlobAnswer, FillReader};
use crate::range::{parse_range, RangeRequest};
use crate::reference::RepoName;
use crate::store::Opened;

pub(super) async fn get(
    app: &App,
    req: &Request,
    name: RepoName,
    digest: Digest,
    head: bool,
) -> Result<Response> {
    let Some((proxy, route)) = cache::route(app, &name, req, head).await? else {
        return stored(app, req, name, digest, head).await;
    };
    // Cached already: the regular answer, from the cache's repository.
    match stored(app, req, route.local.clone(), digest.clone(), head).await {
        Err(Error::BlobUnknown(_)) => {}
        done => {
            if done.is_ok() {
                app.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            }
            return done;
        }
    }
    match proxy.blob(&route, &digest, head).await? {
        // Another node of the cluster fetched it meanwhile.
        BlobAnswer::Stored => stored(app, req, route.local.clone(), digest, head).await,
        answer => Ok(fetched(answer, req, &digest)),
    }
}

pub(super) async fn delete(app: &App, name: RepoName, digest: Digest) -> Result<Response> {
    app.blocking(move |r| r.delete_blob(&name, &digest)).await?;
    Ok(response::empty(StatusCode::Accepted))
}

/// A blob the store holds, linked to `name`.
async fn stored(
    app: &App,
    req: &Request,
    name: RepoName,
    digest: Digest,
    head: bool,
) -> Result<Response> {
    let shown = digest.to_string();
    let open = !head && !app.blob_redirect;
    let d = digest.clone();
    let hit = app.blocking(move |r| r.blob(&name, &d, open)).await?;
    if !head && app.blob_redirect {
        // distribution's `redirect`: the client fetches from the store itself.
        if let Some(url) = app.registry.blob_url(&digest) {
            let mut res = Response::new(StatusCode::TemporaryRedirect);
            res.insert_header("Location", url.as_str());
            res.insert_header(DOCKER_CONTENT_DIGEST, shown.as_str());
            return Ok(res);
        }
    }
    let size = hit.size;
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", "application/octet-stream");
    res.insert_header(DOCKER_CONTENT_DIGEST, shown.as_str());
    res.insert_header("Accept-Ranges", "bytes");
    res.insert_header("ETag", format!("\"{shown}\""));
    let Some(opened) = hit.file else {
        res.set_body(response::head_body(size));
        return Ok(res);
    };
    let (start, len) = match parse_range(req.header("Range").map(|v| v.as_str()), size) {
        RangeRequest::Full => (0, size),
        RangeRequest::Unsatisfiable => return Err(Error::RangeNotSatisfiable { size }),
        RangeRequest::Partial(r) => {
            res.set_status(StatusCode::PartialContent);
            res.insert_header(
                "Content-Range",
                format!("bytes {}-{}/{size}", r.start, r.end),
            );
            (r.start, r.len())
        }
    };
    let mut file = match opened {
        Opened::File(file) => file,
        Opened::Remote(remote) => {
            if len > 0 {
                let body = remote.fetch(start, len).await?;
                res.set_body(response::sized_reader(body, len));
            } else {
                res.set_body(response::sized_reader(smol::io::empty(), 0));
            }
            return Ok(res);
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .ctx(|| format!("seeking in blob {shown}"))?;
    }
    match req
        .ext()
        .get::<Direct>()
        .filter(|_| len >= direct::MIN_BYTES)
    {
        // Plain TCP: the connection's task copies the file to the socket (the seek above does
        // not matter there: it reads at explicit offsets).
        Some(direct) => {
            let body = direct.body(file, start, len);
            res.set_body(response::sized_reader(body, len));
        }
        None => res.set_body(response::sized_reader(FileBody::new(file, len), len)),
    }
    Ok(res)
}

/// A blob the cache does not hold yet: what the upstream says of it (HEAD), or its bytes as
/// the proxy's fetch brings them.
fn fetched(answer: BlobAnswer, req: &Request, digest: &Digest) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.insert_header("Content-Type", "application/octet-stream");
    res.insert_header(DOCKER_CONTENT_DIGEST, digest.to_string());
    match answer {
        BlobAnswer::Stored => unreachable!("answered from the store by the caller"),
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
    res
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
