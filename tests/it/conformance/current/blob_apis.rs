//! `TestBlobAPIs`: each upload flow, the mounts, cancel, range requests, the empty and `{}`
//! blobs, and bad digests, for one digest algorithm.

use super::*;

const SINGLE: Flow = Flow::Chunked {
    put_last: false,
    out_of_order: false,
};

impl Current {
    pub(super) fn blob_apis(&mut self, algo: Algo) {
        self.s.context(&format!("{algo:?} blobs"));
        let repo = self.repo.clone();
        let missing = algo.digest(&random_bytes(512));
        let r = call(&self.c, Method::Get, &self.blob(&repo, &missing)).send();
        self.expect("get-missing", &r, 404);
        let flows: [(&str, Flow, usize); 8] = [
            ("post only", Flow::PostOnly, 512),
            ("post+put", Flow::PostPut, 512),
            ("chunked single", SINGLE, 512),
            ("stream", Flow::Stream, 512),
            (
                "chunked multi",
                Flow::Chunked {
                    put_last: false,
                    out_of_order: false,
                },
                CHUNK_MIN * 3 - 5,
            ),
            (
                "chunked multi and put chunk",
                Flow::Chunked {
                    put_last: true,
                    out_of_order: false,
                },
                CHUNK_MIN * 3 - 5,
            ),
            (
                "chunked out-of-order",
                Flow::Chunked {
                    put_last: false,
                    out_of_order: true,
                },
                CHUNK_MIN * 3 - 5,
            ),
            (
                "chunked out-of-order and put chunk",
                Flow::Chunked {
                    put_last: true,
                    out_of_order: true,
                },
                CHUNK_MIN * 3 - 5,
            ),
        ];
        for (name, flow, size) in flows {
            let bytes = random_bytes(size);
            let digest = algo.digest(&bytes);
            if self.push(name, &repo, flow, &digest, &bytes, false) {
                self.blob_exists(name, &repo, &digest, &bytes);
            }
            self.delete_blob(name, &repo, &digest);
        }
        self.mounts(algo);
        self.cancel(algo);
    }

    pub(super) fn mounts(&mut self, algo: Algo) {
        let (repo, repo2) = (self.repo.clone(), self.repo2.clone());
        for (name, from) in [("mount", Some(repo2.clone())), ("mount anonymous", None)] {
            let bytes = random_bytes(512);
            let digest = algo.digest(&bytes);
            self.push(
                &format!("{name}: push to repo2"),
                &repo2,
                Flow::PostPut,
                &digest,
                &bytes,
                false,
            );
            let r = self.mount(&repo, from.as_deref(), &digest);
            if self.expect(name, &r, 201) {
                self.digest_header(name, &r, &digest);
                self.location_serves(name, &r, &bytes);
                self.blob_exists(name, &repo, &digest, &bytes);
            }
            self.delete_blob(name, &repo, &digest);
            self.delete_blob(name, &repo2, &digest);
        }
        // The source does not have it: never 201; 202 and an upload that completes instead.
        let spec = "mount missing";
        let bytes = random_bytes(512);
        let digest = algo.digest(&bytes);
        let r = self.mount(&repo, Some(&repo2), &digest);
        if self.s.check(
            spec,
            &r,
            "202 with a Location (not mounted)",
            r.status() == 202 && r.location().is_some(),
        ) {
            if let Some(put) = self.put_whole(spec, &r.location().unwrap(), &digest, &bytes, false)
            {
                self.location_serves(spec, &put, &bytes);
                self.blob_exists(spec, &repo, &digest, &bytes);
            }
        }
        self.delete_blob(spec, &repo, &digest);
    }

    pub(super) fn mount(&self, repo: &str, from: Option<&str>, digest: &str) -> Hit {
        let q = match from {
            Some(f) => query(&[("mount", digest), ("from", f)]),
            None => query(&[("mount", digest)]),
        };
        call(&self.c, Method::Post, &format!("{}{q}", self.uploads(repo))).send()
    }

    pub(super) fn cancel(&mut self, algo: Algo) {
        let spec = "post cancel";
        let repo = self.repo.clone();
        let digest = algo.digest(&random_bytes(512));
        if let Some(loc) = self.start(spec, &repo) {
            let d = call(&self.c, Method::Delete, &loc).send();
            self.expect(spec, &d, 204);
        }
        self.delete_blob(spec, &repo, &digest);
    }

    /// `range requests`: 206 with the exact part, its length and `Content-Range` (`/2048` or
    /// `/*`); 416 for a backwards or out-of-bounds range. A 200 means ranges are unsupported.
    pub(super) fn ranges(&mut self, algo: Algo) {
        self.s.context(&format!("{algo:?} blobs/range requests"));
        let repo = self.repo.clone();
        let bytes = random_bytes(2048);
        let digest = algo.digest(&bytes);
        if !self.push("setup", &repo, Flow::PostPut, &digest, &bytes, false) {
            return;
        }
        let parts: [(&str, Option<(usize, usize)>); 6] = [
            ("bytes=500-1499", Some((500, 1499))),
            ("bytes=500-", Some((500, 2047))),
            ("bytes=-500", Some((1548, 2047))),
            ("bytes=2000-5000", Some((2000, 2047))),
            ("bytes=500-0", None),
            ("bytes=5000-10000", None),
        ];
        for (range, part) in parts {
            let r = call(&self.c, Method::Get, &self.blob(&repo, &digest))
                .header("Range", range)
                .send();
            let Some((s, e)) = part else {
                self.expect(range, &r, 416);
                continue;
            };
            let cr = r.header("Content-Range");
            let ok = r.status() == 206
                && r.body() == &bytes[s..=e]
                && r.header("Content-Length") == Some((e - s + 1).to_string().as_str())
                && (cr == Some(format!("bytes {s}-{e}/2048").as_str())
                    || cr == Some(format!("bytes {s}-{e}/*").as_str()));
            self.s.check(
                range,
                &r,
                &format!("206, bytes {s}-{e} and Content-Range bytes {s}-{e}/2048"),
                ok,
            );
        }
        self.delete_blob("range requests", &repo, &digest);
    }

    /// The empty blob and `{}`, pushed by every flow: HEAD, GET, DELETE.
    pub(super) fn well_known_blobs(&mut self, algo: Algo) {
        self.s
            .context(&format!("{algo:?} blobs/well-known contents"));
        let repo = self.repo.clone();
        for (name, bytes) in [("empty", Vec::new()), ("emptyJSON", b"{}".to_vec())] {
            let digest = algo.digest(&bytes);
            for flow in [Flow::PostPut, Flow::PostOnly, Flow::Stream, SINGLE] {
                let spec = format!("{name} blob");
                if self.push(&spec, &repo, flow, &digest, &bytes, false) {
                    self.blob_exists(&format!("{spec} ({flow:?})"), &repo, &digest, &bytes);
                }
                self.delete_blob(&format!("{spec} ({flow:?})"), &repo, &digest);
            }
        }
    }

    /// Bytes that do not match the digest: every flow ends in 400.
    pub(super) fn bad_digests(&mut self, algo: Algo) {
        self.s.context(&format!("{algo:?} blobs/bad digest"));
        let repo = self.repo.clone();
        let flows = [
            Flow::PostOnly,
            Flow::PostPut,
            SINGLE,
            Flow::Chunked {
                put_last: true,
                out_of_order: false,
            },
            Flow::Stream,
        ];
        for flow in flows {
            let good = random_bytes(CHUNK_MIN * 3 - 5);
            let digest = algo.digest(&good);
            let mut corrupt = good;
            corrupt.extend(b"oh no");
            self.push("bad digest", &repo, flow, &digest, &corrupt, true);
        }
    }
}

// ---- the tests ----------------------------------------------------------------------------------

#[test]
fn every_blob_upload_flow_with_sha256() {
    let mut c = Current::new();
    c.blob_apis(Algo::Sha256);
    c.ranges(Algo::Sha256);
    c.well_known_blobs(Algo::Sha256);
    c.bad_digests(Algo::Sha256);
    c.s.finish();
}

#[test]
fn every_blob_upload_flow_with_sha512() {
    let mut c = Current::new();
    c.blob_apis(Algo::Sha512);
    c.ranges(Algo::Sha512);
    c.well_known_blobs(Algo::Sha512);
    c.bad_digests(Algo::Sha512);
    c.s.finish();
}
