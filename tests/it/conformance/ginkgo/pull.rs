//! `01_pull_test.go`: setup (configs[0] and [1], the layer, manifests[0] by tag and [1] by
//! digest), blob and manifest reads, the error-codes spec, and the teardown.

use super::*;

impl Suite {
    pub(super) fn pull(&mut self) -> &mut Suite {
        self.s.context("Pull/Setup");
        let fx = self.fx.clone();
        self.populate_blob(
            "Populate registry with test blob (config[0])",
            &fx.configs[0],
        );
        self.populate_blob(
            "Populate registry with test blob (config[1])",
            &fx.configs[1],
        );
        self.populate_blob("Populate registry with test layer", &fx.layer);
        self.populate_manifest(
            "Populate registry with test manifest (tag)",
            TAG,
            OCI_MANIFEST,
            &fx.manifests[0],
        );
        let d1 = fx.manifests[1].digest.clone();
        self.populate_manifest(
            "Populate registry with test manifest (digest)",
            &d1,
            OCI_MANIFEST,
            &fx.manifests[1],
        );

        self.s.context("Pull/Pull blobs");
        let r = self.head(&format!("blobs/{}", fx.dummy_digest));
        self.expect_status(
            "HEAD request to nonexistent blob should result in 404 response",
            &r,
            404,
        );
        let c0 = fx.configs[0].digest.clone();
        let r = self.head(&format!("blobs/{c0}"));
        let spec = "HEAD request to existing blob should yield 200";
        self.expect_status(spec, &r, 200);
        if let Some(h) = r.header("Docker-Content-Digest") {
            self.s
                .check(spec, &r, &format!("Docker-Content-Digest: {c0}"), h == c0);
        }
        let r = self.get(&format!("blobs/{}", fx.dummy_digest));
        self.expect_status(
            "GET nonexistent blob should result in 404 response",
            &r,
            404,
        );
        let r = self.get(&format!("blobs/{c0}"));
        self.expect_status("GET request to existing blob URL should yield 200", &r, 200);

        self.s.context("Pull/Pull manifests");
        let r = self.head(&format!("manifests/{NONEXISTENT_MANIFEST}"));
        self.expect_status(
            "HEAD request to nonexistent manifest should return 404",
            &r,
            404,
        );
        let (d0, d1) = (
            fx.manifests[0].digest.clone(),
            fx.manifests[1].digest.clone(),
        );
        self.fetch_manifest(
            Method::Head,
            "HEAD request to manifest[0] path (digest) should yield 200 response",
            &d0,
            &d0,
        );
        self.fetch_manifest(
            Method::Head,
            "HEAD request to manifest[1] path (digest) should yield 200 response",
            &d1,
            &d1,
        );
        self.fetch_manifest(
            Method::Head,
            "HEAD request to manifest path (tag) should yield 200 response",
            TAG,
            &d0,
        );
        let r = self.get(&format!("manifests/{NONEXISTENT_MANIFEST}"));
        self.expect_status("GET nonexistent manifest should return 404", &r, 404);
        self.fetch_manifest(
            Method::Get,
            "GET request to manifest[0] path (digest) should yield 200 response",
            &d0,
            &d0,
        );
        self.fetch_manifest(
            Method::Get,
            "GET request to manifest[1] path (digest) should yield 200 response",
            &d1,
            &d1,
        );
        self.fetch_manifest(
            Method::Get,
            "GET request to manifest path (tag) should yield 200 response",
            TAG,
            &d0,
        );

        self.s.context("Pull/Error codes");
        self.error_codes();
        self.s.context("Pull/Teardown");
        self.pull_teardown(&fx);
        self
    }

    /// A GET of `sha256:totallywrong` (with the body the suite attaches): 400 or 404, and a 400
    /// names one of the spec's codes. Sent on a connection of its own: what a body on a GET does
    /// to the kept-alive connection depends on packet timing, so it is checked deterministically
    /// by `the_connection_survives_a_get_with_a_chunked_body`.
    pub(super) fn error_codes(&mut self) {
        let spec = "400 response body should contain OCI-conforming JSON message";
        let r = call(
            &self.c,
            Method::Get,
            &self.path("manifests/sha256:totallywrong"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .chunked(b"blablabla")
        .send_alone();
        self.s
            .check(spec, &r, "400 or 404", matches!(r.status(), 400 | 404));
        if r.status() == 400 {
            let code = r.error_code();
            let known = code.as_deref().is_some_and(|c| ERROR_CODES.contains(&c));
            self.s
                .check(spec, &r, "errors[0].code among the spec's codes", known);
        }
    }

    pub(super) fn pull_teardown(&mut self, fx: &Legacy) {
        let manifests = [
            fx.manifests[0].digest.clone(),
            fx.manifests[1].digest.clone(),
        ];
        let blobs = [
            fx.configs[0].digest.clone(),
            fx.configs[1].digest.clone(),
            fx.layer.digest.clone(),
        ];
        if self.manifests_first {
            self.delete_manifests(
                "Delete manifest[0] and manifest[1] created in setup",
                &manifests,
                &[405],
            );
        }
        self.delete_blobs(
            "Delete config[0], config[1] and layer blobs created in setup",
            &blobs,
            &[404, 405],
        );
        if !self.manifests_first {
            self.delete_manifests(
                "Delete manifest[0] and manifest[1] created in setup",
                &manifests,
                &[405],
            );
        }
    }
}
