//! The OCI distribution-spec conformance suites, replayed against the real server (the official
//! suite needs Go modules from the internet, so it cannot run here).
//!
//! `ginkgo` replays the v1.1.x Ginkgo suite: its four workflows (pull, push, content discovery,
//! content management) with `setup.go`'s fixtures, bodies sent chunked as Go's client sends them,
//! and both teardown orders (`OCI_DELETE_MANIFEST_BEFORE_BLOBS`). `current` replays what the
//! rewritten suite on upstream `main` checks beyond it: every upload flow with sha256 and sha512,
//! ranges, the empty and `{}` blobs, its data sets, error cases, and deletes that take effect at
//! once.
//!
//! Like Ginkgo, a failed spec does not stop the next one: [`Specs`] records each result and the
//! test fails at the end listing every failed spec, with the request and what came back.

mod current;
mod ginkgo;

use std::cell::RefCell;
use std::fmt::Debug;

use http_types::Method;

use crate::support::{Atoll, KeepAlive, Req, Res};

/// The registry and the suites' client: Go's, which keeps its connection open between requests.
pub struct Client {
    pub a: Atoll,
    conn: RefCell<KeepAlive>,
}

impl Client {
    pub fn start() -> Client {
        let a = Atoll::start();
        let conn = RefCell::new(KeepAlive::new(&a));
        Client { a, conn }
    }

    /// Connections opened so far (a new one only after the server closed the last).
    pub fn connections(&self) -> usize {
        self.conn.borrow().opened
    }
}

/// A request being built, remembered as `METHOD path` for the report.
pub struct Call<'c> {
    line: String,
    req: Req,
    conn: &'c RefCell<KeepAlive>,
}

/// Starts a request. `path` may carry a query string, already encoded.
pub fn call<'c>(c: &'c Client, method: Method, path: &str) -> Call<'c> {
    Call {
        line: format!("{method} {path}"),
        req: c.a.req(method, path),
        conn: &c.conn,
    }
}

impl<'c> Call<'c> {
    pub fn header(mut self, name: &str, value: &str) -> Call<'c> {
        self.line = format!("{} [{name}: {value}]", self.line);
        self.req = self.req.header(name, value);
        self
    }

    /// A body with its `Content-Length` (what the newer suite sends for blobs).
    pub fn body(mut self, bytes: &[u8]) -> Call<'c> {
        self.line = format!("{} ({} bytes)", self.line, bytes.len());
        self.req = self.req.body(bytes.to_vec());
        self
    }

    /// A body sent with `Transfer-Encoding: chunked` (what Go sends for a reader of unknown
    /// length: every body of the Ginkgo suite, and the newer suite's manifests and streams).
    /// Go probes such a reader first and sends an empty one as `Content-Length: 0`.
    pub fn chunked(mut self, bytes: &[u8]) -> Call<'c> {
        if bytes.is_empty() {
            return self.body(bytes);
        }
        self.line = format!("{} ({} bytes, chunked)", self.line, bytes.len());
        self.req = self.req.chunked(bytes.to_vec());
        self
    }

    /// Sends on a connection of its own, closed after the response.
    pub fn send_alone(self) -> Hit {
        Hit {
            line: self.line,
            res: self.req.send(),
        }
    }

    /// Sends on the client's connection. An exchange that fails outright comes back as status 0
    /// with the error as its body, so the spec that needed it fails and says why.
    pub fn send(self) -> Hit {
        let res = self
            .req
            .send_on(&mut self.conn.borrow_mut())
            .unwrap_or_else(|e| Res {
                status: 0,
                headers: Vec::new(),
                body: e.into_bytes(),
                head: false,
            });
        Hit {
            line: self.line,
            res,
        }
    }
}

/// A request and its response.
pub struct Hit {
    pub line: String,
    pub res: Res,
}

impl Hit {
    pub fn status(&self) -> u16 {
        self.res.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.res.header(name)
    }

    pub fn body(&self) -> &[u8] {
        &self.res.body
    }

    /// The `Location` as the suites follow it: path and query only (`GetRelativeLocation`),
    /// `None` when absent or empty.
    pub fn location(&self) -> Option<String> {
        let loc = self.header("Location").filter(|l| !l.is_empty())?;
        Some(match loc.find("://") {
            Some(i) => match loc[i + 3..].find('/') {
                Some(j) => loc[i + 3 + j..].to_owned(),
                None => "/".to_owned(),
            },
            None => loc.to_owned(),
        })
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.body()).ok()
    }

    /// `errors[0].code` of the error envelope.
    pub fn error_code(&self) -> Option<String> {
        self.json()?["errors"][0]["code"]
            .as_str()
            .map(str::to_owned)
    }

    /// The exchange, for a failure report: request, status, the headers that matter, body.
    pub fn show(&self) -> String {
        const SHOWN: [&str; 11] = [
            "Location",
            "Range",
            "Content-Range",
            "Content-Type",
            "Content-Length",
            "Docker-Content-Digest",
            "OCI-Subject",
            "OCI-Filters-Applied",
            "OCI-Tag",
            "OCI-Chunk-Min-Length",
            "Link",
        ];
        let headers: Vec<String> = SHOWN
            .iter()
            .flat_map(|n| {
                self.res
                    .headers_named(n)
                    .into_iter()
                    .map(move |v| format!("{n}: {v}"))
            })
            .collect();
        let body = match std::str::from_utf8(self.body()) {
            Ok(t) => t.chars().take(300).collect::<String>(),
            Err(_) => format!("<{} bytes of binary>", self.body().len()),
        };
        format!(
            "{} -> {} [{}] body: {body}",
            self.line,
            self.status(),
            headers.join(", ")
        )
    }
}

/// The results of a suite's specs. Each check is one `g.Specify` assertion of the suite.
pub struct Specs {
    context: String,
    checked: usize,
    failures: Vec<String>,
}

impl Specs {
    pub fn new() -> Specs {
        Specs {
            context: String::new(),
            checked: 0,
            failures: Vec::new(),
        }
    }

    /// Names the suite context (`Pull/Setup`, ...) the next checks belong to.
    pub fn context(&mut self, name: &str) {
        self.context = name.to_owned();
    }

    /// Records whether `hit` satisfies the spec; `want` says what was expected.
    pub fn check(&mut self, spec: &str, hit: &Hit, want: &str, ok: bool) -> bool {
        self.record(spec, ok, || format!("want {want}; got {}", hit.show()))
    }

    /// Records a check on a value computed from responses.
    pub fn check_value(&mut self, spec: &str, got: impl Debug, want: &str, ok: bool) -> bool {
        self.record(spec, ok, || format!("want {want}; got {got:?}"))
    }

    fn record(&mut self, spec: &str, ok: bool, detail: impl FnOnce() -> String) -> bool {
        self.checked += 1;
        if ok {
            println!("ok   [{}] {spec}", self.context);
        } else {
            let line = format!("[{}] {spec}: {}", self.context, detail());
            println!("FAIL {line}");
            self.failures.push(line);
        }
        ok
    }

    /// Fails the test if any spec failed, listing them all.
    #[track_caller]
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} conformance checks failed:\n- {}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n- ")
        );
        assert!(self.checked > 0, "no conformance check ran");
    }
}

pub fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

/// `?k=v&...` encoded as Go's `url.Values.Encode` does (sorted keys; `:` and `/` escaped).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in sorted {
        s.append_pair(k, v);
    }
    format!("?{}", s.finish())
}

/// `location` with the query parameters added, as the suites do with `u.Query().Set(...)`.
pub fn with_query(location: &str, pairs: &[(&str, &str)]) -> String {
    let q = query(pairs);
    match location.split_once('?') {
        Some((path, existing)) => format!("{path}?{existing}&{}", &q[1..]),
        None => format!("{location}{q}"),
    }
}
