//! The rewritten conformance suite on upstream `main` (`run.go`, `api.go`, `testdata.go`): the
//! checks it adds to the Ginkgo suite. Every blob upload flow with sha256 and sha512, each
//! followed by a GET of the returned `Location` (exact bytes), HEAD and GET of the blob, and a
//! delete that takes effect at once; ranges; the empty and `{}` blobs; bad digests; its data sets
//! pushed by digest then by tag, listed, pulled, queried for referrers and deleted (tags, then
//! manifests in reverse push order, then blobs, each followed by a HEAD that must say 404).
//!
//! Transport as the suite's client sends it: blob bodies with a real `Content-Length`, manifests
//! and streamed PATCHes chunked (`apiWithBody` sets no length), query values URL-encoded.

mod blob_apis;
mod data_sets;
mod uploads;

use http_types::Method;
use serde_json::{json, Value};

use super::{call, query, with_query, Client, Hit, Specs};
use crate::support::conformance_data::*;
use crate::support::conformance_fixtures::*;
use crate::support::content::{random_bytes, sha256, OCI_INDEX, OCI_MANIFEST};

const OCTET: &str = "application/octet-stream";
/// The suite's smallest chunk (`chunkMin`).
const CHUNK_MIN: usize = 1024;

struct Current {
    c: Client,
    s: Specs,
    /// OCI_REPO1 and OCI_REPO2 at their defaults.
    repo: String,
    repo2: String,
}

/// How a blob is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    PostOnly,
    PostPut,
    Stream,
    Chunked { put_last: bool, out_of_order: bool },
}

impl Current {
    fn new() -> Current {
        Current {
            c: Client::start(),
            s: Specs::new(),
            repo: "conformance/repo1".to_owned(),
            repo2: "conformance/repo2".to_owned(),
        }
    }

    fn uploads(&self, repo: &str) -> String {
        format!("/v2/{repo}/blobs/uploads/")
    }

    fn blob(&self, repo: &str, digest: &str) -> String {
        format!("/v2/{repo}/blobs/{digest}")
    }

    fn manifest(&self, reference: &str) -> String {
        format!("/v2/{}/manifests/{reference}", self.repo)
    }

    /// `Docker-Content-Digest`, when sent, must be the digest (`VerifyDigest`).
    fn digest_header(&mut self, spec: &str, r: &Hit, digest: &str) {
        if let Some(h) = r.header("Docker-Content-Digest") {
            self.s.check(
                spec,
                r,
                &format!("Docker-Content-Digest: {digest}"),
                h == digest,
            );
        }
    }

    /// `BlobVerifyLocation`: a GET of the returned Location gives 200 and the exact bytes.
    fn location_serves(&mut self, spec: &str, r: &Hit, bytes: &[u8]) {
        let Some(loc) = r.location() else {
            self.s.check(spec, r, "a Location", false);
            return;
        };
        let g = call(&self.c, Method::Get, &loc).send();
        let ok = g.status() == 200 && g.body() == bytes;
        self.s.check(
            &format!("{spec}: GET of the Location"),
            &g,
            "200 with the exact bytes",
            ok,
        );
    }

    fn expect(&mut self, spec: &str, r: &Hit, status: u16) -> bool {
        self.s
            .check(spec, r, &status.to_string(), r.status() == status)
    }
}

// ---- the tests ----------------------------------------------------------------------------------

#[test]
fn empty_repository_has_no_tags_and_an_empty_referrers_index() {
    let mut c = Current::new();
    c.s.context("empty");
    let r = call(&c.c, Method::Get, &format!("/v2/{}/tags/list", c.repo)).send();
    let ok = (r.status() == 200 && r.json().is_some()) || r.status() == 404;
    c.s.check("tag list", &r, "200 with JSON, or 404", ok);
    let subject = sha256(&random_bytes(26));
    c.referrers(&subject);
    c.s.finish();
}

/// `TestManifestErrors` and the bad-digest image.
#[test]
fn manifest_errors() {
    let mut c = Current::new();
    c.s.context("missing-manifest");
    let r = call(&c.c, Method::Get, &c.manifest(&sha256(&random_bytes(1024)))).send();
    c.expect("by-digest", &r, 404);
    let tag = format!(
        "missing-{}",
        random_text(20, b"abcdefghijklmnopqrstuvwxyz234567")
    );
    let r = call(&c.c, Method::Get, &c.manifest(&tag)).send();
    c.expect("by-tag", &r, 404);

    c.s.context("bad-digest-image");
    let mut ds = DataSet::new("bad-digest-image");
    ds.gen_manifest_full(&Gen::default());
    let repo = c.repo.clone();
    for (digest, bytes) in &ds.blobs {
        c.push("blob push", &repo, Flow::PostPut, digest, bytes, false);
    }
    let (digest, body) = ds.manifests[0].clone();
    let mut spaced = body.clone();
    spaced.extend(b"  ");
    let r = call(&c.c, Method::Put, &c.manifest(&digest))
        .header("Content-Type", OCI_MANIFEST)
        .chunked(&spaced)
        .send();
    c.expect("manifest by digest with whitespace added", &r, 400);

    c.s.context("invalid-digest-format");
    let r = call(&c.c, Method::Put, &c.manifest("sha256:baddigeststring"))
        .header("Content-Type", OCI_MANIFEST)
        .chunked(&body)
        .send();
    c.expect("manifest-put", &r, 400);
    let r = call(&c.c, Method::Get, &c.manifest("sha256:baddigeststring")).send();
    c.s.check(
        "manifest-get",
        &r,
        "404 or 400",
        matches!(r.status(), 404 | 400),
    );
    c.s.finish();
}

/// `?last=` without `n`: every tag after `last` in Go's sort order, and none up to it.
#[test]
fn tag_list_after_last_without_n() {
    let mut c = Current::new();
    c.s.context("tag list");
    let mut ds = DataSet::new("tags");
    ds.gen_manifest_full(&Gen::default());
    let repo = c.repo.clone();
    for (digest, bytes) in &ds.blobs {
        c.push("blob push", &repo, Flow::PostPut, digest, bytes, false);
    }
    let body = ds.manifests[0].1.clone();
    let mut tags = vec![
        "image", "TEST0", "test1", "Zeta", "alpha", "v1.0", "V1.1", "_private", "latest",
    ];
    for t in &tags {
        let r = call(&c.c, Method::Put, &c.manifest(t))
            .header("Content-Type", OCI_MANIFEST)
            .chunked(&body)
            .send();
        c.expect(&format!("push tag {t}"), &r, 201);
    }
    tags.sort();
    let middle = tags[tags.len() / 2];
    let r = call(
        &c.c,
        Method::Get,
        &format!("/v2/{}/tags/list{}", c.repo, query(&[("last", middle)])),
    )
    .send();
    let listed: Vec<String> = r
        .json()
        .and_then(|v| serde_json::from_value(v["tags"].clone()).ok())
        .unwrap_or_default();
    let after: Vec<&str> = tags.iter().copied().filter(|t| *t > middle).collect();
    c.s.check(
        &format!("last={middle}"),
        &r,
        &format!("200 listing exactly {after:?}"),
        r.status() == 200 && listed == after,
    );
    c.s.finish();
}

/// `PUT /manifests/<digest>?tag=a&tag=b` (OCI_VERSION=dev): each tag created and announced in
/// `OCI-Tag` (comma-separated and/or repeated).
#[test]
fn tag_query_parameter_creates_and_announces_every_tag() {
    let mut c = Current::new();
    c.s.context("manifest put with tag parameters");
    let mut ds = DataSet::new("tag-param");
    ds.gen_manifest_full(&Gen::default());
    let repo = c.repo.clone();
    for (digest, bytes) in &ds.blobs {
        c.push("blob push", &repo, Flow::PostPut, digest, bytes, false);
    }
    let (digest, body) = ds.manifests[0].clone();
    let path = format!(
        "{}{}",
        c.manifest(&digest),
        "?tag=tag-param-a&tag=tag-param-b"
    );
    let r = call(&c.c, Method::Put, &path)
        .header("Content-Type", OCI_MANIFEST)
        .chunked(&body)
        .send();
    let announced: Vec<String> = r
        .res
        .headers_named("OCI-Tag")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .collect();
    let ok = r.status() == 201
        && ["tag-param-a", "tag-param-b"]
            .iter()
            .all(|t| announced.iter().any(|a| a == t));
    c.s.check("PUT with ?tag=", &r, "201 and OCI-Tag naming both tags", ok);
    for t in ["tag-param-a", "tag-param-b"] {
        c.manifest_exists(&format!("by tag {t}"), t, &digest, &body);
    }
    c.s.finish();
}
