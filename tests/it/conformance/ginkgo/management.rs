//! `04_management_test.go`: delete the tag, then the manifest (which must drop every tag on
//! it), list the tags of the emptied repository, delete the blobs.

use super::*;

impl Suite {
    pub(super) fn management(&mut self) -> &mut Suite {
        let fx = self.fx.clone();
        self.s.context("Content Management/Setup");
        self.populate_blob("Populate registry with test config blob", &fx.configs[3]);
        self.populate_blob("Populate registry with test layer", &fx.layer);
        self.populate_manifest(
            "Populate registry with test tag",
            TAG,
            OCI_MANIFEST,
            &fx.manifests[3],
        );
        let spec = "Check how many tags there are before anything gets deleted";
        let (r, before) = self.tag_list("");
        self.expect_status(spec, &r, 200);
        self.s.check(spec, &r, "a JSON tag list", before.is_some());
        let before = before.unwrap_or_default().len();

        self.s.context("Content Management/Manifest delete");
        let spec = "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)";
        let r = self.delete(spec, &format!("manifests/{TAG}"), &[202, 400, 405], false);
        if r.status() == 400 {
            self.s.check(
                spec,
                &r,
                "errors[0].code UNSUPPORTED",
                r.error_code().as_deref() == Some("UNSUPPORTED"),
            );
        }
        let d3 = fx.manifests[3].digest.clone();
        self.delete(
            "DELETE request to manifest (digest) should yield 202 response unless already deleted",
            &format!("manifests/{d3}"),
            &[202, 404],
            false,
        );
        let r = self.get(&format!("manifests/{d3}"));
        self.s.check("GET request to deleted manifest URL should yield 404 response, unless delete is disallowed", &r, "404 or 200", matches!(r.status(), 404 | 200));
        let spec = "GET request to tags list should reflect manifest deletion";
        let (r, after) = self.tag_list("");
        self.expect_status(spec, &r, 200);
        self.s.check(
            spec,
            &r,
            &format!("a JSON tag list with fewer than {before} tags"),
            after.is_some_and(|t| t.len() < before),
        );

        self.s.context("Content Management/Blob delete");
        let spec = "DELETE request to blob URL should yield 202 response";
        self.delete(
            spec,
            &format!("blobs/{}", fx.configs[3].digest),
            &[202, 404, 405],
            false,
        );
        let layer = self.delete(
            spec,
            &format!("blobs/{}", fx.layer.digest),
            &[202, 404, 405],
            false,
        );
        if layer.status() != 405 {
            let r = self.get(&format!("blobs/{}", fx.configs[3].digest));
            self.expect_status(
                "GET request to deleted blob URL should yield 404 response",
                &r,
                404,
            );
        }
        self
    }
}
