//! `03_discovery_test.go`: tags (test0..3 and TEST0..3) and the referrers of manifests[4]
//! and manifests[3] pushed before their subjects; tag pagination; referrers with and without
//! the artifactType filter; the teardown that deletes subjects while referrers remain.

use super::*;

impl Suite {
    pub(super) fn discovery(&mut self) -> &mut Suite {
        let fx = self.fx.clone();
        self.s.context("Content Discovery/Setup");
        self.populate_blob(
            "Populate registry with test blob (config[2])",
            &fx.configs[2],
        );
        self.populate_blob("Populate registry with test layer", &fx.layer);
        // test0..3, and (newer revision) TEST0..3, which Go's sort puts first.
        for tag in [
            "test0", "test1", "test2", "test3", "TEST0", "TEST1", "TEST2", "TEST3",
        ] {
            self.populate_manifest(
                &format!("Populate registry with test tags ({tag})"),
                tag,
                OCI_MANIFEST,
                &fx.manifests[2],
            );
        }
        self.references_setup(&fx);
        self.s.context("Content Discovery/listing tags");
        self.list_tags();
        self.s.context("Content Discovery/listing references");
        self.list_referrers(&fx);
        self.s.context("Content Discovery/Teardown");
        self.discovery_teardown(&fx);
        self
    }

    pub(super) fn references_setup(&mut self, fx: &Legacy) {
        let spec = "References setup";
        let (m4, m3) = (
            fx.manifests[4].digest.clone(),
            fx.manifests[3].digest.clone(),
        );
        self.s.check_value(
            spec,
            &fx.empty_json.digest,
            "the empty JSON digest",
            fx.empty_json.digest == crate::support::content::EMPTY_JSON_DIGEST,
        );
        self.populate_blob("References setup: empty JSON blob", &fx.empty_json);
        self.populate_blob("References setup: reference blob A", &fx.ref_blob_a);
        // Referrers pushed before their subject exists.
        self.populate_referrer(
            "References setup: A-config referrer",
            OCI_MANIFEST,
            &fx.refs_a_config,
            &m4,
        );
        self.populate_referrer(
            "References setup: A-layer referrer",
            OCI_MANIFEST,
            &fx.refs_a_layer,
            &m4,
        );
        self.populate_referrer(
            "References setup: index referrer",
            OCI_INDEX,
            &fx.refs_index,
            &m4,
        );
        self.populate_blob("References setup: config[4]", &fx.configs[4]);
        self.populate_blob("References setup: layer", &fx.layer);
        self.populate_manifest(
            "References setup: manifest[4] as tagtest0",
            TAG,
            OCI_MANIFEST,
            &fx.manifests[4],
        );
        self.populate_blob("References setup: reference blob B", &fx.ref_blob_b);
        self.populate_referrer(
            "References setup: B-config referrer",
            OCI_MANIFEST,
            &fx.refs_b_config,
            &m4,
        );
        self.populate_referrer(
            "References setup: B-layer referrer",
            OCI_MANIFEST,
            &fx.refs_b_layer,
            &m4,
        );
        // manifests[3] is not pushed until the management workflow.
        self.populate_referrer(
            "References setup: C-layer referrer of a subject never pushed",
            OCI_MANIFEST,
            &fx.refs_c_layer,
            &m3,
        );
    }

    /// The tag list, read as Go's `json.Unmarshal` into `TagList` reads it: `None` unless the
    /// body is a JSON object; a missing or null `tags` is an empty list.
    pub(super) fn tag_list(&self, q: &str) -> (Hit, Option<Vec<String>>) {
        let r = self.get(&format!("tags/list{q}"));
        let tags = r.json().filter(Value::is_object).map(|v| {
            v["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        });
        (r, tags)
    }

    pub(super) fn list_tags(&mut self) {
        let (r, tags) = self.tag_list("");
        self.expect_status(
            "GET request to list tags should yield 200 response",
            &r,
            200,
        );
        let tags = tags.unwrap_or_default();
        let mut go_sorted = tags.clone();
        go_sorted.sort();
        let mut folded = tags.clone();
        folded.sort_by_key(|t| t.to_lowercase());
        self.s.check(
            "GET request to list tags should be sorted (newer revision)",
            &r,
            "Go sort.Strings or case-insensitive order",
            tags == go_sorted || tags == folded,
        );

        let n = tags.len() / 2;
        let (r, page) = self.tag_list(&query(&[("n", &n.to_string())]));
        let spec = "GET number of tags should be limitable by `n` query parameter";
        self.expect_status(spec, &r, 200);
        let got = page.clone().unwrap_or_default();
        self.s
            .check(spec, &r, &format!("exactly {n} tags"), got.len() == n);

        let spec = "GET start of tag is set by `last` query parameter";
        let Some(last) = n.checked_sub(1).and_then(|i| got.get(i)).cloned() else {
            self.s
                .check(spec, &r, "a first page to take `last` from", false);
            return;
        };
        let (r, next) = self.tag_list(&query(&[("n", &n.to_string()), ("last", &last)]));
        self.expect_status(spec, &r, 200);
        let next = next.unwrap_or_default();
        self.s.check(
            spec,
            &r,
            &format!("at most {n} tags, without {last:?} (newer revision)"),
            next.len() <= n && !next.contains(&last),
        );
    }

    pub(super) fn referrers(&self, subject: &str, q: &str) -> (Hit, Vec<Value>) {
        let r = self.get(&format!("referrers/{subject}{q}"));
        let list = r
            .json()
            .and_then(|v| v["manifests"].as_array().cloned())
            .unwrap_or_default();
        (r, list)
    }

    /// Each entry has exactly one annotation: the manifest's own.
    pub(super) fn one_annotation_each(&mut self, spec: &str, r: &Hit, list: &[Value]) {
        let ok = list.iter().all(|d| {
            let ann = d["annotations"].as_object();
            let want = d["digest"]
                .as_str()
                .and_then(|x| self.fx.annotations.get(x));
            ann.is_some_and(|a| {
                a.len() == 1
                    && a.get(ANNOTATION_KEY).and_then(Value::as_str) == want.map(String::as_str)
            })
        });
        self.s.check(
            spec,
            r,
            "exactly one annotation per entry, the manifest's",
            ok,
        );
    }

    pub(super) fn list_referrers(&mut self, fx: &Legacy) {
        let index_type = |s: &mut Specs, spec: &str, r: &Hit| {
            s.check(
                spec,
                r,
                &format!("Content-Type: {OCI_INDEX}"),
                r.header("Content-Type") == Some(OCI_INDEX),
            );
        };
        let spec = "GET request to nonexistent blob should result in empty 200 response";
        let (r, list) = self.referrers(&fx.dummy_digest, "");
        self.expect_status(spec, &r, 200);
        index_type(&mut self.s, spec, &r);
        self.s.check(
            spec,
            &r,
            "no manifests",
            r.json().is_some() && list.is_empty(),
        );

        let spec = "GET request to existing blob should yield 200";
        let m4 = fx.manifests[4].digest.clone();
        let (r, list) = self.referrers(&m4, "");
        self.expect_status(spec, &r, 200);
        index_type(&mut self.s, spec, &r);
        self.s.check(spec, &r, "5 referrers", list.len() == 5);
        let distinct = list.len() < 2 || list[0]["digest"] != list[1]["digest"];
        self.s.check(spec, &r, "distinct digests", distinct);
        self.one_annotation_each(spec, &r, &list);

        let spec = "GET request to existing blob with filter should yield 200";
        let (r, list) = self.referrers(&m4, &query(&[("artifactType", TYPE_A)]));
        self.expect_status(spec, &r, 200);
        index_type(&mut self.s, spec, &r);
        match r.header("OCI-Filters-Applied") {
            Some(f) => {
                self.s.check(
                    spec,
                    &r,
                    "OCI-Filters-Applied: artifactType",
                    f == "artifactType",
                );
                self.s
                    .check(spec, &r, "the 2 referrers of type A", list.len() == 2);
            }
            // The suite accepts an unfiltered list with a warning.
            None => {
                self.s.check(
                    spec,
                    &r,
                    "all 5 referrers when no filter was applied",
                    list.len() == 5,
                );
            }
        }
        self.one_annotation_each(spec, &r, &list);

        let spec = "GET request to missing manifest should yield 200";
        let (r, list) = self.referrers(&fx.manifests[3].digest, "");
        self.expect_status(spec, &r, 200);
        index_type(&mut self.s, spec, &r);
        let only_c = list.len() == 1 && list[0]["digest"] == fx.refs_c_layer.digest.as_str();
        self.s
            .check(spec, &r, "exactly the C-layer referrer", only_c);
    }

    pub(super) fn discovery_teardown(&mut self, fx: &Legacy) {
        // The order of the suite: subjects (manifests[4]) go while their referrers remain, and
        // `tagtest0` is deleted as if it were a digest.
        let references: Vec<String> = [
            &fx.refs_index.digest,
            &fx.manifests[2].digest,
            &fx.manifests[4].digest,
            &fx.refs_a_config.digest,
            &fx.refs_a_layer.digest,
            &TAG.to_owned(),
            &fx.refs_b_config.digest,
            &fx.refs_b_layer.digest,
            &fx.refs_c_layer.digest,
        ]
        .into_iter()
        .cloned()
        .collect();
        let spec = "Delete created manifest & associated tags";
        if self.manifests_first {
            self.delete_manifests(spec, &references, &[404, 405]);
        }
        let own = [fx.configs[2].digest.clone(), fx.layer.digest.clone()];
        self.delete_blobs(
            "Delete config and layer blobs created in tests (2xx or 405 only)",
            &own,
            &[405],
        );
        if !self.manifests_first {
            self.delete_manifests(spec, &references, &[404, 405]);
        }
        let referrer_manifests: Vec<String> = [
            &fx.refs_index,
            &fx.refs_a_config,
            &fx.refs_a_layer,
            &fx.manifests[4],
            &fx.refs_b_config,
            &fx.refs_b_layer,
        ]
        .iter()
        .map(|b| b.digest.clone())
        .collect();
        let spec = "References teardown";
        if self.manifests_first {
            self.delete_manifests(spec, &referrer_manifests, &[404, 405]);
        }
        let blobs = [
            &fx.configs[4],
            &fx.ref_blob_a,
            &fx.ref_blob_b,
            &fx.empty_json,
        ]
        .map(|b| b.digest.clone());
        self.delete_blobs(spec, &blobs, &[404, 405]);
        if !self.manifests_first {
            self.delete_manifests(spec, &referrer_manifests, &[404, 405]);
        }
    }
}
