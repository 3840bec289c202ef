//! Where a request's body ends, decided before anyone reads it: a request head whose framing
//! two readers could take differently is refused (RFC 9112 §6), because behind a front proxy
//! that is how request smuggling starts: the proxy frames the body one way, atoll another, and
//! the rest of the body becomes a request of its own.
//!
//! Checked on the head's bytes, with the parser async-h1 uses (`httparse`, so both see the same
//! header lines), before async-h1 parses them; `conn.rs` calls [`check`] for every head. Why
//! async-h1 alone does not do: it frames by the last `Content-Length` while `Request::header`
//! gives the first; it takes `+5` for 5; a `Transfer-Encoding` other than exactly `chunked` gets
//! no body at all, so the body is read as the next request.
//!
//! A header value that is not ASCII is refused too: http-types cannot hold one, and async-h1
//! panicked on it. Also HTTP/1.0, which async-h1 refuses: a GET or HEAD without a body (a load balancer's
//! health check) is handed to `http10.rs`; anything else is refused. Heads httparse cannot
//! parse pass through: async-h1 refuses them in the same way (400, 431). Pure.

/// async-h1's limit on a head, bytes (its `MAX_HEAD_LENGTH`): a longer one is refused there.
pub const MAX_HEAD: usize = 8 * 1024;
/// async-h1's limit on the number of headers (its `MAX_HEADERS`).
const MAX_HEADERS: usize = 128;

/// What to do with a request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let async-h1 read it.
    Pass,
    /// An HTTP/1.0 GET or HEAD without a body: answered by `http10.rs`.
    Http10(Head10),
    /// Answer with this status and reason, and close.
    Refuse { status: u16, why: String },
}

/// An HTTP/1.0 request head atoll answers itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head10 {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// Where the head in `buf` ends (just after its first empty line, `\r\n\r\n`, which is where
/// async-h1 stops reading it); `from` is how far an earlier call searched.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| start + i + 4)
}

/// The verdict on a complete head (up to and including its `\r\n\r\n`).
pub fn check(head: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        // async-h1 parses it the same way and refuses it.
        Ok(httparse::Status::Partial) | Err(_) => return Verdict::Pass,
    };
    if parsed != head.len() {
        // httparse ended the head at an earlier empty line with a bare LF; async-h1 would drop
        // what follows it, a front proxy might not.
        return refuse(
            400,
            "the request head has an empty line ending in a bare LF".into(),
        );
    }
    if let Some(h) = req.headers.iter().find(|h| !h.value.is_ascii()) {
        // http-types takes ASCII only, and async-h1 panics on anything else (the connection
        // then closed without an answer).
        return refuse(400, format!("header {} is not ASCII", h.name));
    }
    let values = |name: &str| -> Vec<&[u8]> {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    if let Some(refusal) = framing_problem(&lengths, &codings) {
        return refusal;
    }
    if req.version == Some(1) {
        return Verdict::Pass;
    }
    let method = req.method.unwrap_or_default();
    let no_body = codings.is_empty() && lengths.iter().all(|v| trim(v) == b"0");
    if !(matches!(method, "GET" | "HEAD") && no_body) {
        return refuse(
            400,
            "HTTP/1.0 is answered for GET and HEAD without a body only: use HTTP/1.1".into(),
        );
    }
    Verdict::Http10(Head10 {
        method: method.to_owned(),
        target: req.path.unwrap_or("/").to_owned(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_owned(), value)
            })
            .collect(),
    })
}

/// What is wrong with a head's `Content-Length` and `Transfer-Encoding` values, if anything.
fn framing_problem(lengths: &[&[u8]], codings: &[&[u8]]) -> Option<Verdict> {
    if !lengths.is_empty() && !codings.is_empty() {
        return Some(refuse(
            400,
            "Transfer-Encoding and Content-Length together".into(),
        ));
    }
    let mut length = None;
    for v in lengths {
        let digits = trim(v);
        let n = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        let Some(n) = n else {
            let v = String::from_utf8_lossy(v);
            return Some(refuse(
                400,
                format!("Content-Length {v:?} is not a number of bytes"),
            ));
        };
        if length.is_some_and(|l| l != n) {
            return Some(refuse(400, "two different Content-Length values".into()));
        }
        length = Some(n);
    }
    // A coding atoll does not know: 501, as RFC 9112 §6.1 asks.
    let unknown = codings
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"chunked"));
    if let Some(c) = unknown {
        let c = String::from_utf8_lossy(c);
        return Some(refuse(
            501,
            format!("transfer coding {c:?} is not supported: only chunked"),
        ));
    }
    // Exactly what async-h1 takes for chunked: anything else would get no body there.
    let chunked_once = matches!(codings, [v] if v.eq_ignore_ascii_case(b"chunked"));
    if !codings.is_empty() && !chunked_once {
        return Some(refuse(
            400,
            "Transfer-Encoding must be chunked, once".into(),
        ));
    }
    None
}

fn refuse(status: u16, why: String) -> Verdict {
    Verdict::Refuse { status, why }
}

/// A header value without the spaces and tabs around it.
fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Verdict {
        let head = head.replace('\n', "\r\n");
        check(head.as_bytes())
    }

    fn status(head: &str) -> Option<u16> {
        match verdict(head) {
            Verdict::Refuse { status, .. } => Some(status),
            _ => None,
        }
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line_however_it_arrives() {
        let h = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\r\n\r\n";
        assert_eq!(head_end(h, 0), Some(27));
        for split in 1..h.len() {
            let first = head_end(&h[..split], 0);
            let found = first.or_else(|| head_end(h, split));
            assert_eq!(found, Some(27), "split at {split}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let post =
            |headers: &str| format!("POST /v2/a/blobs/uploads/ HTTP/1.1\nHost: x\n{headers}\n");
        // (headers, status: None = let through)
        for (headers, want) in [
            ("Content-Length: 5\n", None),
            ("Content-Length: 0\n", None),
            ("Content-Length:  5 \n", None),
            ("Content-Length: 5\nContent-Length: 5\n", None),
            ("Content-Length: 007\n", None),
            ("Transfer-Encoding: chunked\n", None),
            ("Transfer-Encoding: Chunked\n", None),
            ("", None),
            ("Content-Length: 0\nContent-Length: 5\n", Some(400)),
            ("Content-Length: +5\n", Some(400)),
            ("Content-Length: -1\n", Some(400)),
            ("Content-Length: 5, 5\n", Some(400)),
            ("Content-Length: 0x5\n", Some(400)),
            ("Content-Length: \n", Some(400)),
            ("Content-Length: 99999999999999999999999\n", Some(400)),
            ("Transfer-Encoding: chunked\nContent-Length: 5\n", Some(400)),
            ("Transfer-Encoding: xchunked\n", Some(501)),
            ("Transfer-Encoding: gzip, chunked\n", Some(501)),
            ("Transfer-Encoding: identity\n", Some(501)),
            (
                "Transfer-Encoding: chunked\nTransfer-Encoding: gzip\n",
                Some(501),
            ),
            ("Transfer-Encoding: chunked, chunked\n", Some(400)),
            (
                "Transfer-Encoding: chunked\nTransfer-Encoding: chunked\n",
                Some(400),
            ),
            ("Transfer-Encoding: chunked,\n", Some(400)),
            ("Transfer-Encoding: \n", Some(400)),
        ] {
            assert_eq!(status(&post(headers)), want, "{headers:?}");
        }
        // An empty line with a bare LF ends the head earlier for httparse than for a proxy.
        let bare = b"GET / HTTP/1.1\r\nHost: x\n\nContent-Length: 5\r\n\r\n";
        assert!(matches!(check(bare), Verdict::Refuse { status: 400, .. }));
        assert_eq!(
            status("GET / HTTP/1.1\nHost: x\nX-Name: \u{e9}\n\n"),
            Some(400)
        );
    }

    #[test]
    fn heads_httparse_cannot_parse_are_left_to_async_h1() {
        for head in [
            "GET / HTTP/2.0\nHost: x\n\n",
            "GET\n\n",
            "G@T / HTTP/1.1\nHost: x\n\n",
            "\n\n",
        ] {
            assert_eq!(verdict(head), Verdict::Pass, "{head:?}");
        }
    }

    #[test]
    fn http_1_0_gets_and_heads_without_a_body_are_answered_and_the_rest_refused() {
        let Verdict::Http10(h) = verdict("GET /healthz HTTP/1.0\n\n") else {
            panic!("not answered")
        };
        assert_eq!((h.method.as_str(), h.target.as_str()), ("GET", "/healthz"));
        assert!(h.headers.is_empty());
        let Verdict::Http10(h) = verdict("HEAD /v2/ HTTP/1.0\nHost: r\nContent-Length: 0\n\n")
        else {
            panic!("not answered")
        };
        assert_eq!(h.headers[0], ("Host".to_owned(), "r".to_owned()));
        for head in [
            "POST /v2/a/blobs/uploads/ HTTP/1.0\nContent-Length: 5\n\n",
            "POST /v2/a/blobs/uploads/ HTTP/1.0\n\n",
            "GET /v2/ HTTP/1.0\nContent-Length: 5\n\n",
            "GET /v2/ HTTP/1.0\nTransfer-Encoding: chunked\n\n",
            "OPTIONS / HTTP/1.0\n\n",
        ] {
            assert_eq!(status(head), Some(400), "{head:?}");
        }
        assert_eq!(status("GET / HTTP/1.0\nContent-Length: +0\n\n"), Some(400));
    }
}
