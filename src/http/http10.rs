//! HTTP/1.0 requests, which async-h1 refuses: load balancers' health checks (HAProxy's
//! `option httpchk GET /healthz` sends `GET /healthz HTTP/1.0`, without a Host) and `curl -0`.
//!
//! The connection guard hands over a GET or HEAD without a body (`framing.rs` refuses the rest
//! of HTTP/1.0). The server turns it into a request here (`request`), answers it through the
//! same `respond` as every request (routing, logins, the access log), and the answer is written
//! here (`send`) in a form an HTTP/1.0 client reads: the body's length when it is known, else
//! a body that ends when the connection does (never chunked), and the connection closes after
//! it.

use std::net::SocketAddr;

use http_types::headers::{HeaderName, HeaderValue};
use http_types::{Method, Request, Response, Url};
use log::debug;
use smol::io::{AsyncWrite, AsyncWriteExt};

use super::framing::Head10;

/// Answers a head whose target or headers make no request, then closes.
pub(super) async fn malformed(mut io: impl AsyncWrite + Unpin) {
    let msg = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nmalformed request target or header\n";
    let _ = io.write_all(msg.as_bytes()).await;
    let _ = io.close().await;
}

/// Writes `res`, the answer to a `method` request, on `io`, then closes it.
pub(super) async fn send(
    mut io: impl AsyncWrite + Unpin,
    method: Method,
    mut res: Response,
    peer: SocketAddr,
) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        res.status() as u16,
        res.status().canonical_reason()
    );
    for (name, values) in res.iter() {
        // Framing and connection headers are this writer's; the date too.
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            for v in values {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        }
    }
    if let Some(len) = res.len() {
        out.push_str(&format!("content-length: {len}\r\n"));
    }
    out.push_str(&format!(
        "date: {}\r\nconnection: close\r\n\r\n",
        crate::clock::http_date(crate::clock::now())
    ));
    // The body is the access log's counter: dropped (HEAD) or sent, it writes the line.
    let mut body = res.take_body();
    let sent = async {
        io.write_all(out.as_bytes()).await?;
        if method != Method::Head {
            smol::io::copy(&mut body, &mut io).await?;
        }
        io.close().await
    }
    .await;
    if let Err(e) = sent {
        debug!("HTTP/1.0 answer to {peer}: {e}");
    }
}

/// The request an HTTP/1.0 head asks for; `None` if its target or a header cannot be one.
pub(super) fn request(head: &Head10) -> Option<Request> {
    let method = match head.method.as_str() {
        "HEAD" => Method::Head,
        _ => Method::Get,
    };
    let url = if head.target.starts_with('/') {
        // HTTP/1.0 needs no Host: any name does, as nothing but the path is routed.
        let host = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map_or("localhost", |(_, v)| v.as_str());
        Url::parse(&format!("http://{host}{}", head.target)).ok()?
    } else if head.target.starts_with("http://") || head.target.starts_with("https://") {
        Url::parse(&head.target).ok()?
    } else {
        return None;
    };
    let mut req = Request::new(method, url);
    req.set_version(Some(http_types::Version::Http1_0));
    for (name, value) in &head.headers {
        let name: HeaderName = name.parse().ok()?;
        let value: HeaderValue = value.parse().ok()?;
        req.append_header(name, value);
    }
    Some(req)
}
