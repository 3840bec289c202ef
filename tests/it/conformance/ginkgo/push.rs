//! `02_push_test.go`: streamed, monolithic and chunked uploads (with the duplicate chunk sent
//! to the POST's Location), cross-repository mounts, manifest uploads, and the teardown.

use super::*;

impl Suite {
    pub(super) fn push(&mut self) -> &mut Suite {
        let fx = self.fx.clone();
        self.blob_upload_streamed(&fx);
        self.blob_upload_monolithic(&fx);
        self.blob_upload_chunked();
        self.cross_mount(&fx);
        let empty_layer_pushed = self.manifest_upload(&fx);
        self.s.context("Push/Teardown");
        let mut manifests = vec![fx.manifests[1].digest.clone()];
        if empty_layer_pushed {
            manifests.push(fx.empty_layer_manifest.digest.clone());
        }
        let blobs = [fx.configs[1].digest.clone(), fx.layer.digest.clone()];
        if self.manifests_first {
            self.delete_manifests("Delete manifest created in tests", &manifests, &[405]);
        }
        self.delete_blobs(
            "Delete config and layer blobs created in tests",
            &blobs,
            &[404, 405],
        );
        if !self.manifests_first {
            self.delete_manifests("Delete manifest created in tests", &manifests, &[405]);
        }
        self
    }

    pub(super) fn blob_upload_streamed(&mut self, fx: &Legacy) {
        self.s.context("Push/Blob Upload Streamed");
        let spec = "PATCH request with blob in body should yield 202 response";
        let post = call(&self.c, Method::Post, &self.path("blobs/uploads/")).send();
        let Some(loc) = post.location() else {
            self.s.check(spec, &post, "a Location", false);
            return;
        };
        let patch = call(&self.c, Method::Patch, &loc)
            .header("Content-Type", OCTET)
            .chunked(&fx.blob_a.bytes)
            .send();
        self.expect_status(spec, &patch, 202);
        let spec = "PUT request to session URL with digest should yield 201 response";
        let Some(loc) = patch.location() else {
            self.s
                .check(spec, &patch, "a Location on the PATCH's response", false);
            return;
        };
        let put = call(
            &self.c,
            Method::Put,
            &with_query(&loc, &[("digest", &fx.blob_a.digest)]),
        )
        .header("Content-Type", OCTET)
        .send();
        self.expect_status(spec, &put, 201);
        self.s
            .check(spec, &put, "a Location", put.location().is_some());
    }

    pub(super) fn blob_upload_monolithic(&mut self, fx: &Legacy) {
        self.s.context("Push/Blob Upload Monolithic");
        let r = self.get(&format!("blobs/{}", fx.dummy_digest));
        self.expect_status(
            "GET nonexistent blob should result in 404 response",
            &r,
            404,
        );
        let c1 = &fx.configs[1];
        let spec = "POST request with digest and blob should yield a 201 or 202";
        let post = call(
            &self.c,
            Method::Post,
            &format!(
                "{}{}",
                self.path("blobs/uploads/"),
                query(&[("digest", &c1.digest)])
            ),
        )
        .header("Content-Type", OCTET)
        .chunked(&c1.bytes)
        .send();
        self.s
            .check(spec, &post, "a Location", post.location().is_some());
        self.s.check(
            spec,
            &post,
            "201 or 202",
            matches!(post.status(), 201 | 202),
        );
        let r = self.get(&format!("blobs/{}", c1.digest));
        let want = if post.status() == 202 { 404 } else { 200 };
        self.expect_status("GET request to blob URL from prior request should yield 200 or 404 based on response code", &r, want);

        let post = call(&self.c, Method::Post, &self.path("blobs/uploads/")).send();
        self.expect_status("POST request should yield a session ID", &post, 202);
        self.monolithic_put(
            "PUT upload of a blob should yield a 201 Response",
            post.location(),
            c1,
        );
        let r = self.get(&format!("blobs/{}", c1.digest));
        self.expect_status(
            "GET request to existing blob should yield 200 response",
            &r,
            200,
        );
        let post = call(&self.c, Method::Post, &self.path("blobs/uploads/")).send();
        self.monolithic_put(
            "PUT upload of a layer blob should yield a 201 Response",
            post.location(),
            &fx.layer,
        );
        let r = self.get(&format!("blobs/{}", fx.layer.digest));
        self.expect_status(
            "GET request to existing layer should yield 200 response",
            &r,
            200,
        );
    }

    pub(super) fn monolithic_put(&mut self, spec: &str, location: Option<String>, blob: &Blob) {
        let loc = location.unwrap_or_else(|| self.path("blobs/uploads/"));
        let put = call(
            &self.c,
            Method::Put,
            &with_query(&loc, &[("digest", &blob.digest)]),
        )
        .header("Content-Type", OCTET)
        .chunked(&blob.bytes)
        .send();
        self.s
            .check(spec, &put, "a Location", put.location().is_some());
        self.expect_status(spec, &put, 201);
    }

    /// A POST with `Content-Length: 0`; regenerates testBlobB if the registry asks for bigger
    /// chunks (`OCI-Chunk-Min-Length`), as the suite does.
    pub(super) fn chunked_session(&mut self, spec: &str, regenerate: bool) -> Option<String> {
        let post = call(&self.c, Method::Post, &self.path("blobs/uploads/")).send();
        if let (true, Some(min)) = (
            regenerate,
            post.header("OCI-Chunk-Min-Length")
                .and_then(|m| m.parse::<usize>().ok()),
        ) {
            if min > self.fx.blob_b.chunk1.len() {
                self.fx.blob_b = ChunkedBlob::new(min * 2 - 2);
            }
        }
        let loc = post.location();
        self.s.check(spec, &post, "a Location", loc.is_some());
        loc
    }

    pub(super) fn patch_chunk(&self, loc: &str, range: &str, chunk: &[u8]) -> Hit {
        call(&self.c, Method::Patch, loc)
            .header("Content-Type", OCTET)
            .header("Content-Range", range)
            .chunked(chunk)
            .send()
    }

    pub(super) fn blob_upload_chunked(&mut self) {
        self.s.context("Push/Blob Upload Chunked");
        let spec = "Out-of-order blob upload should return 416";
        if let Some(loc) = self.chunked_session(spec, true) {
            let b = self.fx.blob_b.clone();
            let r = self.patch_chunk(&loc, &b.range2(), &b.chunk2);
            self.expect_status(spec, &r, 416);
        }
        let b = self.fx.blob_b.clone();
        let spec = "PATCH request with first chunk should return 202";
        let Some(first) = self.chunked_session(spec, false) else {
            return;
        };
        let r = self.patch_chunk(&first, &b.range1(), &b.chunk1);
        self.expect_status(spec, &r, 202);
        self.s.check(
            spec,
            &r,
            &format!("Range: {}", b.range1()),
            r.header("Range") == Some(b.range1().as_str()),
        );

        // The duplicate goes to the POST's Location, not to the PATCH's.
        let r = self.patch_chunk(&first, &b.range1(), &b.chunk1);
        self.expect_status("Retry previous blob chunk should return 416", &r, 416);

        let spec = "Get on stale blob upload should return 204 with a range and location";
        let r = call(&self.c, Method::Get, &first).send();
        self.expect_status(spec, &r, 204);
        self.s.check(spec, &r, "a Location", r.location().is_some());
        self.s.check(
            spec,
            &r,
            &format!("Range: {}", b.range1()),
            r.header("Range") == Some(b.range1().as_str()),
        );

        let spec = "PATCH request with second chunk should return 202";
        let loc = r.location().unwrap_or(first);
        let r = self.patch_chunk(&loc, &b.range2(), &b.chunk2);
        self.expect_status(spec, &r, 202);
        self.s.check(spec, &r, "a Location", r.location().is_some());
        let whole = format!("0-{}", b.whole.len() - 1);
        self.s.check(
            spec,
            &r,
            &format!("Range: {whole} (newer revision)"),
            r.header("Range") == Some(whole.as_str()),
        );

        let spec = "PUT request with digest should return 201";
        let loc = r.location().unwrap_or(loc);
        let put = call(
            &self.c,
            Method::Put,
            &with_query(&loc, &[("digest", &b.whole.digest)]),
        )
        .header("Content-Type", OCTET)
        .send();
        self.expect_status(spec, &put, 201);
        self.s
            .check(spec, &put, "a Location", put.location().is_some());
    }

    pub(super) fn cross_mount(&mut self, fx: &Legacy) {
        self.s.context("Push/Cross-Repository Blob Mount");
        let uploads = format!("/v2/{}/blobs/uploads/", self.cross);
        let spec = "Cross-mounting of a blob without the from argument should yield session id";
        let r = call(
            &self.c,
            Method::Post,
            &format!("{uploads}{}", query(&[("mount", &fx.dummy_digest)])),
        )
        .send();
        self.expect_status(spec, &r, 202);
        self.s.check(spec, &r, "a Location", r.location().is_some());

        let spec = "POST request to mount another repository's blob should return 201 or 202";
        let mount = query(&[("mount", &fx.blob_a.digest), ("from", &self.ns)]);
        let r = call(&self.c, Method::Post, &format!("{uploads}{mount}")).send();
        self.s
            .check(spec, &r, "201 or 202", matches!(r.status(), 201 | 202));
        if r.status() == 201 {
            let spec = "GET request to test digest within cross-mount namespace should return 200";
            let want = format!("/v2/{}/blobs/{}", self.cross, fx.blob_a.digest);
            self.s.check(
                spec,
                &r,
                &format!("Location {want}"),
                r.location().as_deref() == Some(want.as_str()),
            );
            let g = call(&self.c, Method::Get, &r.location().unwrap_or(want)).send();
            self.expect_status(spec, &g, 200);
            // OCI_AUTOMATIC_CROSSMOUNT=1: atoll mounts from any repository it holds the blob in.
            let spec = "Cross-mounting without from, and automatic content discovery enabled should return a 201";
            let r = call(
                &self.c,
                Method::Post,
                &format!("{uploads}{}", query(&[("mount", &fx.blob_a.digest)])),
            )
            .send();
            self.expect_status(spec, &r, 201);
        } else if r.status() == 202 {
            let spec = "Cross-mounting of nonexistent blob should yield session id";
            let ok = r.location().is_some_and(|l| l.starts_with(&uploads));
            self.s
                .check(spec, &r, &format!("Location under {uploads}"), ok);
        }
    }

    /// Returns whether the empty-layer manifest was stored (its teardown depends on it).
    pub(super) fn manifest_upload(&mut self, fx: &Legacy) -> bool {
        self.s.context("Push/Manifest Upload");
        let r = self.get(&format!("manifests/{NONEXISTENT_MANIFEST}"));
        self.expect_status("GET nonexistent manifest should return 404", &r, 404);
        for i in 0..4 {
            let spec = format!("PUT should accept a manifest upload (test{i})");
            let r = self.put_manifest(&format!("test{i}"), OCI_MANIFEST, &fx.manifests[1].bytes);
            self.s
                .check(&spec, &r, "a Location", r.location().is_some());
            self.expect_status(&spec, &r, 201);
        }
        // The suite only warns when this is refused; clients push such manifests (no layers, no
        // mediaType field), so it is held to 201 here.
        let spec = "Registry should accept a manifest upload with no layers (a Warn in the suite)";
        let r = self.put_manifest("emptylayer", OCI_MANIFEST, &fx.empty_layer_manifest.bytes);
        let stored = self.expect_status(spec, &r, 201);
        if stored {
            self.s.check(spec, &r, "a Location", r.location().is_some());
        }
        let r = call(
            &self.c,
            Method::Get,
            &self.path(&format!("manifests/{}", fx.manifests[1].digest)),
        )
        .header("Accept", OCI_MANIFEST)
        .send();
        self.expect_status(
            "GET request to manifest URL (digest) should yield 200 response",
            &r,
            200,
        );
        stored
    }
}
