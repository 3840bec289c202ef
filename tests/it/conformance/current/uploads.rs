//! Every way the suite sends a blob (`BlobPostOnly`, `BlobPostPut`, `BlobPatchStream`,
//! `BlobPatchChunked` with its out-of-order recovery), then `BlobVerifyLocation`; and the
//! blob HEAD, GET and DELETE checks that follow each upload.

use super::*;

impl Current {
    /// Pushes a blob by one flow. With `bad`, `bytes` do not match `digest` and the flow must end
    /// in 400 (a POST-only upload may also answer 202 and refuse the PUT). Returns whether the
    /// upload did what it should.
    pub(super) fn push(
        &mut self,
        spec: &str,
        repo: &str,
        flow: Flow,
        digest: &str,
        bytes: &[u8],
        bad: bool,
    ) -> bool {
        let spec = format!("{spec} ({flow:?})");
        let done = match flow {
            Flow::PostOnly => self.post_only(&spec, repo, digest, bytes, bad),
            Flow::PostPut => {
                let loc = self.start(&spec, repo);
                loc.and_then(|l| self.put_whole(&spec, &l, digest, bytes, bad))
            }
            Flow::Stream => self.stream(&spec, repo, digest, bytes, bad),
            Flow::Chunked {
                put_last,
                out_of_order,
            } => self.chunked(&spec, repo, digest, bytes, bad, put_last, out_of_order),
        };
        match (done, bad) {
            (Some(r), false) => {
                self.digest_header(&spec, &r, digest);
                self.location_serves(&spec, &r, bytes);
                true
            }
            (None, _) => false,
            (Some(_), true) => true,
        }
    }

    /// POST with no body: 202 and a Location.
    pub(super) fn start(&mut self, spec: &str, repo: &str) -> Option<String> {
        let r = call(&self.c, Method::Post, &self.uploads(repo)).send();
        let loc = r.location();
        let ok = self.s.check(
            spec,
            &r,
            "202 with a Location",
            r.status() == 202 && loc.is_some(),
        );
        loc.filter(|_| ok)
    }

    /// The closing PUT's response: 201 with a Location, or 400 for a bad digest.
    pub(super) fn close(&mut self, spec: &str, r: Hit, bad: bool) -> Option<Hit> {
        let ok = match bad {
            true => self.expect(spec, &r, 400),
            false => self.s.check(
                spec,
                &r,
                "201 with a Location",
                r.status() == 201 && r.location().is_some(),
            ),
        };
        ok.then_some(r)
    }

    pub(super) fn put_whole(
        &mut self,
        spec: &str,
        loc: &str,
        digest: &str,
        bytes: &[u8],
        bad: bool,
    ) -> Option<Hit> {
        let put = call(
            &self.c,
            Method::Put,
            &with_query(loc, &[("digest", digest)]),
        )
        .header("Content-Type", OCTET)
        .body(bytes)
        .send();
        self.close(spec, put, bad)
    }

    pub(super) fn post_only(
        &mut self,
        spec: &str,
        repo: &str,
        digest: &str,
        bytes: &[u8],
        bad: bool,
    ) -> Option<Hit> {
        let r = call(
            &self.c,
            Method::Post,
            &format!("{}{}", self.uploads(repo), query(&[("digest", digest)])),
        )
        .header("Content-Type", OCTET)
        .body(bytes)
        .send();
        match (bad, r.status()) {
            (true, 202) => {
                let loc = r.location()?;
                self.put_whole(spec, &loc, digest, bytes, true)
            }
            (true, _) => self.expect(spec, &r, 400).then_some(r),
            // 202 here makes the suite fall back to a PUT and fail the POST-only test.
            (false, _) => {
                let ok = r.status() == 201 && r.location().is_some();
                self.s
                    .check(spec, &r, "201 with a Location", ok)
                    .then_some(r)
            }
        }
    }

    pub(super) fn stream(
        &mut self,
        spec: &str,
        repo: &str,
        digest: &str,
        bytes: &[u8],
        bad: bool,
    ) -> Option<Hit> {
        let loc = self.start(spec, repo)?;
        let r = call(&self.c, Method::Patch, &loc)
            .header("Content-Type", OCTET)
            .chunked(bytes)
            .send();
        let loc = r.location();
        if !self.s.check(
            spec,
            &r,
            "202 with a Location",
            r.status() == 202 && loc.is_some(),
        ) {
            return None;
        }
        let put = call(
            &self.c,
            Method::Put,
            &with_query(&loc?, &[("digest", digest)]),
        )
        .header("Content-Type", OCTET)
        .send();
        self.close(spec, put, bad)
    }

    /// A chunk PATCH (or the last chunk in the PUT) with `Content-Range: start-end`.
    pub(super) fn send_chunk(
        &self,
        loc: &str,
        put_digest: Option<&str>,
        start: usize,
        end: usize,
        bytes: &[u8],
    ) -> crate::conformance::Call<'_> {
        let (method, url) = match put_digest {
            Some(d) => (Method::Put, with_query(loc, &[("digest", d)])),
            None => (Method::Patch, loc.to_owned()),
        };
        call(&self.c, method, &url)
            .header("Content-Type", OCTET)
            .header("Content-Range", &format!("{start}-{end}"))
            .body(&bytes[start..=end])
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn chunked(
        &mut self,
        spec: &str,
        repo: &str,
        digest: &str,
        bytes: &[u8],
        bad: bool,
        put_last: bool,
        out_of_order: bool,
    ) -> Option<Hit> {
        let post = call(&self.c, Method::Post, &self.uploads(repo)).send();
        let mut loc = post.location();
        if !self.s.check(
            spec,
            &post,
            "202 with a Location",
            post.status() == 202 && loc.is_some(),
        ) {
            return None;
        }
        let min = post
            .header("OCI-Chunk-Min-Length")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let chunk = (bytes.len() / 3 + 1)
            .max(min)
            .max(CHUNK_MIN)
            .min(bytes.len());
        let len = bytes.len() as i64;
        let mut last: i64 = -1;
        while last < len - 1 {
            if out_of_order {
                loc = Some(
                    self.out_of_order_chunk(spec, loc?, digest, bytes, last, chunk, put_last)?,
                );
            }
            let start = (last + 1) as usize;
            last = ((start + chunk - 1) as i64).min(len - 1);
            let in_put = put_last && last == len - 1;
            let c = self.send_chunk(&loc?, in_put.then_some(digest), start, last as usize, bytes);
            let r = c.send();
            if in_put {
                return self.close(spec, r, bad);
            }
            loc = r.location();
            if !self.s.check(
                spec,
                &r,
                "202 with a Location",
                r.status() == 202 && loc.is_some(),
            ) {
                return None;
            }
        }
        let put = call(
            &self.c,
            Method::Put,
            &with_query(&loc?, &[("digest", digest)]),
        )
        .header("Content-Type", OCTET)
        .send();
        self.close(spec, put, bad)
    }

    /// Sends a chunk that skips ahead (or back to 0): 416. Then a GET of the upload recovers:
    /// 204, a Location, and `Range: 0-<last byte received>`. Returns the Location to go on with.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn out_of_order_chunk(
        &mut self,
        spec: &str,
        loc: String,
        digest: &str,
        bytes: &[u8],
        last: i64,
        chunk: usize,
        put_last: bool,
    ) -> Option<String> {
        let len = bytes.len();
        let mut bad_start = (last + 1) as usize + chunk;
        if bad_start >= len {
            bad_start = 0;
        }
        let bad_end = (bad_start + chunk - 1).min(len - 1);
        let in_put = put_last && bad_end == len - 1;
        let c = self.send_chunk(&loc, in_put.then_some(digest), bad_start, bad_end, bytes);
        let r = c.send();
        if !self.expect(&format!("{spec}: out-of-order chunk"), &r, 416) {
            return None;
        }
        let url = if in_put {
            with_query(&loc, &[("digest", digest)])
        } else {
            loc
        };
        let g = call(&self.c, Method::Get, &url).send();
        let range = g
            .header("Range")
            .and_then(|h| h.strip_prefix("0-"))
            .and_then(|n| n.parse::<i64>().ok());
        let ok = g.status() == 204
            && g.location().is_some()
            && range.is_some_and(|n| last < 0 || n == last);
        let want = format!("204, a Location and Range 0-{}", last.max(0));
        self.s.check(
            &format!("{spec}: upload status after the 416"),
            &g,
            &want,
            ok,
        );
        g.location().filter(|_| ok)
    }

    /// `BlobHeadExists` and `BlobGetExistsFull`.
    pub(super) fn blob_exists(&mut self, spec: &str, repo: &str, digest: &str, bytes: &[u8]) {
        let known_len = !bytes.is_empty() || digest == sha256(b"");
        let h = call(&self.c, Method::Head, &self.blob(repo, digest)).send();
        let len_ok =
            !known_len || h.header("Content-Length") == Some(bytes.len().to_string().as_str());
        let ok = h.status() == 200 && h.body().is_empty() && len_ok;
        self.s.check(
            &format!("{spec}: blob HEAD"),
            &h,
            &format!("200, no body, Content-Length {}", bytes.len()),
            ok,
        );
        self.digest_header(&format!("{spec}: blob HEAD"), &h, digest);
        let g = call(&self.c, Method::Get, &self.blob(repo, digest)).send();
        let len_ok =
            !known_len || g.header("Content-Length") == Some(bytes.len().to_string().as_str());
        let ok = g.status() == 200 && (!known_len || g.body() == bytes) && len_ok;
        self.s.check(
            &format!("{spec}: blob GET"),
            &g,
            "200 with the exact bytes and Content-Length",
            ok,
        );
        self.digest_header(&format!("{spec}: blob GET"), &g, digest);
    }

    /// `TestDeleteBlob`: 202 (404 if already gone), then HEAD says 404 at once.
    pub(super) fn delete_blob(&mut self, spec: &str, repo: &str, digest: &str) {
        let d = call(&self.c, Method::Delete, &self.blob(repo, digest)).send();
        if self.s.check(
            &format!("{spec}: blob DELETE"),
            &d,
            "202 or 404",
            matches!(d.status(), 202 | 404),
        ) {
            let h = call(&self.c, Method::Head, &self.blob(repo, digest)).send();
            self.expect(
                &format!("{spec}: blob HEAD right after the delete"),
                &h,
                404,
            );
        }
    }
}
