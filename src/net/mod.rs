//! atoll's own HTTP/1.1 client wing: connections out of the process, to upstream registries
//! (`proxy`) and to an object store (`s3`), sharing one pool of idle keep-alive connections.
//!
//! - `pool.rs`: which connections may be reused, and which idle ones are kept (pure).
//! - `conn.rs`: TCP and TLS connections, and giving them back for reuse once an answer is read.
//! - `tls.rs`: TLS with one connector for the process (the system's CA store, `SSL_CERT_FILE`).
//!
//! [`Http::exchange`] is the one way a request leaves: over an idle connection to the same
//! origin when the request may be sent twice, else over a new one; bounded by a deadline for
//! the answer's head. What a request means (a registry login, an S3 signature) is the caller's.

pub mod conn;
pub mod pool;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_types::{Method, Request, Response};
use log::debug;
use smol::future::FutureExt;
use smol::Timer;

use conn::{Conn, Idle};
use pool::Origin;

/// The process's outgoing connections.
#[derive(Default)]
pub struct Http {
    idle: Arc<Idle>,
}

impl Http {
    pub fn new() -> Http {
        Http::default()
    }

    /// Closes the connections idle for too long; returns how many. Run periodically, so a
    /// server not asked again does not keep sockets open.
    pub fn close_idle(&self, now: Instant) -> usize {
        self.idle.prune(now)
    }

    /// Exchanges the request `make` builds, all within `timeout` up to the answer's head. A
    /// request that may be sent twice (GET, HEAD, PUT, DELETE: RFC 9110's idempotent methods)
    /// goes over an idle connection to its origin when there is one, and is built and sent
    /// again on a new connection if that one turns out to have been closed while it waited.
    /// Every answer's connection goes back to the idle ones once its body is read to its end.
    pub async fn exchange(
        &self,
        make: impl Fn() -> Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let req = make();
        let url = req.url().clone();
        let origin = Origin::of(&url)?;
        let method = req.method();
        let head = method == Method::Head;
        let idempotent = matches!(
            method,
            Method::Get | Method::Head | Method::Put | Method::Delete
        );
        let work = async {
            let mut req = Some(req);
            if let Some(idle) = idempotent.then(|| self.idle.take(&origin)).flatten() {
                let first = req.take().expect("the request is unsent");
                match async_h1::connect(idle.clone(), first).await {
                    Ok(res) => return Ok(conn::lease(res, idle, origin, &self.idle, head)),
                    Err(e) => debug!("{origin}: an idle connection had closed ({e}); retrying"),
                }
            }
            let fresh = Conn::open(&origin).await?;
            let res = async_h1::connect(fresh.clone(), req.unwrap_or_else(&make))
                .await
                .map_err(|e| format!("{}:{}: {e}", origin.host, origin.port))?;
            Ok(conn::lease(res, fresh, origin, &self.idle, head))
        };
        let deadline = async {
            Timer::after(timeout).await;
            Err(format!("no answer within {} s", timeout.as_secs_f32()))
        };
        work.or(deadline).await
    }
}
