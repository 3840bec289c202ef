//! The data sets (`GenerateData`), each pushed by digest then by tag, listed, read with HEAD and
//! GET, queried for referrers, and deleted: tags, manifests in reverse push order, blobs.

use super::*;

fn media_type_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| OCI_MANIFEST.to_owned())
}

fn subject_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["subject"]["digest"].as_str().map(str::to_owned)
}

impl Current {
    pub(super) fn data_set(&mut self, ds: &DataSet) {
        self.s.context(&format!("{}/push", ds.name));
        let repo = self.repo.clone();
        for (digest, bytes) in &ds.blobs {
            self.push("blob push", &repo, Flow::PostPut, digest, bytes, false);
        }
        for (digest, body) in &ds.manifests {
            self.put_manifest(
                &format!("manifest by digest {digest}"),
                digest,
                digest,
                body,
            );
        }
        for (tag, digest) in &ds.tags {
            let body = &ds.manifests.iter().find(|(d, _)| d == digest).unwrap().1;
            self.put_manifest(&format!("manifest by tag {tag}"), tag, digest, body);
        }
        self.s.context(&format!("{}/tag-list", ds.name));
        self.tags_listed(ds);
        self.s.context(&format!("{}/head and pull", ds.name));
        for (tag, digest) in &ds.tags {
            let body = &ds.manifests.iter().find(|(d, _)| d == digest).unwrap().1;
            self.manifest_exists(&format!("by tag {tag}"), tag, digest, body);
        }
        for (digest, body) in &ds.manifests {
            self.manifest_exists(&format!("by digest {digest}"), digest, digest, body);
        }
        for (digest, bytes) in &ds.blobs {
            self.blob_exists("blob", &repo, digest, bytes);
        }
        self.s.context(&format!("{}/referrers", ds.name));
        self.referrers_listed(ds);
        self.s.context(&format!("{}/delete", ds.name));
        self.delete_data_set(ds);
    }

    /// `ManifestPut`: 201 and a Location that serves the bytes with their media type and
    /// length; `OCI-Subject` when the body names a subject; `Docker-Content-Digest` if sent.
    pub(super) fn put_manifest(&mut self, spec: &str, reference: &str, digest: &str, body: &[u8]) {
        let mt = media_type_of(body);
        let r = call(&self.c, Method::Put, &self.manifest(reference))
            .header("Content-Type", &mt)
            .chunked(body)
            .send();
        if !self.s.check(
            spec,
            &r,
            "201 with a Location",
            r.status() == 201 && r.location().is_some(),
        ) {
            return;
        }
        if let Some(subject) = subject_of(body) {
            let ok = r.header("OCI-Subject") == Some(subject.as_str());
            self.s
                .check(spec, &r, &format!("OCI-Subject: {subject}"), ok);
        }
        self.digest_header(spec, &r, digest);
        let g = call(&self.c, Method::Get, &r.location().unwrap())
            .header("Accept", OCI_INDEX)
            .header("Accept", OCI_MANIFEST)
            .send();
        let ok = g.status() == 200
            && g.header("Content-Type") == Some(mt.as_str())
            && g.header("Content-Length") == Some(body.len().to_string().as_str())
            && g.body() == body;
        let want = format!(
            "200, Content-Type {mt}, Content-Length {}, the exact bytes",
            body.len()
        );
        self.s
            .check(&format!("{spec}: GET of the Location"), &g, &want, ok);
    }

    /// `ManifestHeadExists` and `ManifestGetExists`.
    pub(super) fn manifest_exists(
        &mut self,
        spec: &str,
        reference: &str,
        digest: &str,
        body: &[u8],
    ) {
        let mt = media_type_of(body);
        for method in [Method::Head, Method::Get] {
            let r = call(&self.c, method, &self.manifest(reference))
                .header("Accept", OCI_INDEX)
                .header("Accept", OCI_MANIFEST)
                .send();
            let want_body: &[u8] = if method == Method::Head { b"" } else { body };
            let ok = r.status() == 200
                && r.header("Content-Type") == Some(mt.as_str())
                && r.header("Content-Length") == Some(body.len().to_string().as_str())
                && r.body() == want_body;
            let spec = format!("manifest {method} {spec}");
            self.s.check(
                &spec,
                &r,
                &format!("200, Content-Type {mt}, Content-Length {}", body.len()),
                ok,
            );
            self.digest_header(&spec, &r, digest);
        }
    }

    pub(super) fn tags_listed(&mut self, ds: &DataSet) {
        let r = call(
            &self.c,
            Method::Get,
            &format!("/v2/{}/tags/list", self.repo),
        )
        .send();
        let listed: Vec<String> = r
            .json()
            .and_then(|v| v["tags"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        let missing: Vec<&String> = ds
            .tags
            .iter()
            .map(|(t, _)| t)
            .filter(|t| !listed.contains(t))
            .collect();
        let ok = r.status() == 200 && missing.is_empty();
        self.s.check(
            "tag list",
            &r,
            &format!("200 listing every tag (missing: {missing:?})"),
            ok,
        );
    }

    pub(super) fn referrers_listed(&mut self, ds: &DataSet) {
        let mut subjects: Vec<&String> = ds.referrers.iter().map(|e| &e.subject).collect();
        subjects.dedup();
        for subject in subjects {
            let (r, list) = self.referrers(subject);
            for e in ds.referrers.iter().filter(|e| &e.subject == subject) {
                let found = list.iter().any(|d| {
                    d["digest"] == e.digest.as_str()
                        && d["mediaType"] == e.media_type.as_str()
                        && d["size"] == e.size
                        && d["artifactType"].as_str().unwrap_or("")
                            == e.artifact_type.as_deref().unwrap_or("")
                        && e.annotations
                            .iter()
                            .all(|(k, v)| d["annotations"][k] == v.as_str())
                });
                let want = format!(
                    "an entry {} ({:?}, {} bytes, artifactType {:?}, annotations {:?})",
                    e.digest, e.media_type, e.size, e.artifact_type, e.annotations
                );
                self.s
                    .check(&format!("referrers of {subject}"), &r, &want, found);
            }
        }
    }

    /// `ReferrersList`: 200, an OCI index (Content-Type and body), its entries.
    pub(super) fn referrers(&mut self, subject: &str) -> (Hit, Vec<Value>) {
        let r = call(
            &self.c,
            Method::Get,
            &format!("/v2/{}/referrers/{subject}", self.repo),
        )
        .send();
        let v = r.json().unwrap_or(Value::Null);
        let ok = r.status() == 200
            && r.header("Content-Type") == Some(OCI_INDEX)
            && v["mediaType"] == OCI_INDEX
            && v["schemaVersion"] == 2;
        let want =
            format!("200, Content-Type {OCI_INDEX}, mediaType and schemaVersion 2 in the body");
        self.s
            .check(&format!("referrers of {subject}"), &r, &want, ok);
        let list = v["manifests"].as_array().cloned().unwrap_or_default();
        (r, list)
    }

    /// Tags, then manifests in reverse push order, then blobs; each gone at once.
    pub(super) fn delete_data_set(&mut self, ds: &DataSet) {
        for (tag, _) in &ds.tags {
            self.delete_manifest(&format!("tag {tag}"), tag);
        }
        for (digest, _) in ds.manifests.iter().rev() {
            self.delete_manifest(&format!("manifest {digest}"), digest);
        }
        let repo = self.repo.clone();
        for (digest, _) in &ds.blobs {
            self.delete_blob("blob", &repo, digest);
        }
    }

    pub(super) fn delete_manifest(&mut self, spec: &str, reference: &str) {
        let d = call(&self.c, Method::Delete, &self.manifest(reference)).send();
        if self.s.check(
            &format!("{spec}: DELETE"),
            &d,
            "202 or 404",
            matches!(d.status(), 202 | 404),
        ) {
            let h = call(&self.c, Method::Head, &self.manifest(reference)).send();
            self.expect(&format!("{spec}: HEAD right after the delete"), &h, 404);
        }
    }
}

fn platforms() -> Vec<Value> {
    vec![
        json!({"os": "linux", "architecture": "amd64"}),
        json!({"os": "linux", "architecture": "arm64"}),
    ]
}

fn run(ds: DataSet) {
    let mut c = Current::new();
    c.data_set(&ds);
    c.s.finish();
}

// ---- the tests ----------------------------------------------------------------------------------

#[test]
fn images_compressed_and_uncompressed_round_trip() {
    let mut ds = DataSet::new("image");
    ds.gen_manifest_full(&Gen {
        tag: Some("image"),
        ..Gen::default()
    });
    ds.gen_manifest_full(&Gen {
        tag: Some("image-uncompressed"),
        uncompressed: true,
        ..Gen::default()
    });
    run(ds);
}

#[test]
fn multi_platform_index_round_trips() {
    let mut ds = DataSet::new("index");
    ds.gen_index_full(
        &platforms(),
        &Gen {
            tag: Some("index"),
            ..Gen::default()
        },
    );
    run(ds);
}

#[test]
fn nested_index_round_trips() {
    let mut ds = DataSet::new("nested-index");
    let one = ds.gen_index_full(&platforms(), &Gen::default());
    let two = ds.gen_index_full(&platforms(), &Gen::default());
    ds.gen_index(
        vec![(one, Value::Null), (two, Value::Null)],
        &Gen {
            tag: Some("index-of-index"),
            ..Gen::default()
        },
    );
    run(ds);
}

#[test]
fn empty_index_round_trips() {
    let mut ds = DataSet::new("empty-index");
    ds.gen_index_full(
        &[],
        &Gen {
            tag: Some("index"),
            ..Gen::default()
        },
    );
    run(ds);
}

#[test]
fn artifacts_and_artifact_index_round_trip() {
    let mut ds = DataSet::new("artifact");
    ds.gen_manifest_full(&Gen {
        tag: Some("artifact"),
        ..Gen::artifact()
    });
    run(ds);
    let mut ds = DataSet::new("artifact-index");
    ds.gen_index_full(
        &platforms(),
        &Gen {
            tag: Some("artifact-index"),
            ..Gen::artifact()
        },
    );
    run(ds);
    let mut ds = DataSet::new("artifact-without-layers");
    let empty = Gen {
        tag: Some("artifact-without-layers"),
        layer_bytes: Some(b"{}".to_vec()),
        layer_media_type: Some(EMPTY_JSON_TYPE),
        ..Gen::artifact()
    };
    ds.gen_manifest_full(&empty);
    run(ds);
}

#[test]
fn referrers_of_an_image_include_images_and_artifacts() {
    let mut ds = DataSet::new("artifacts-with-subject");
    let subject = ds.gen_manifest_full(&Gen {
        tag: Some("image"),
        ..Gen::default()
    });
    // An image with a subject and no artifactType: listed with its config's media type.
    ds.gen_manifest_full(&Gen {
        subject: Some(subject.clone()),
        ..Gen::default()
    });
    ds.gen_manifest_full(&Gen::referrer(&subject));
    run(ds);
}

#[test]
fn referrers_of_an_index_include_an_artifact_index() {
    let mut ds = DataSet::new("index-with-subject");
    let subject = ds.gen_index_full(
        &platforms(),
        &Gen {
            tag: Some("index"),
            ..Gen::default()
        },
    );
    ds.gen_index_full(&platforms(), &Gen::referrer(&subject));
    run(ds);
}

#[test]
fn a_referrer_of_a_missing_subject_is_accepted_and_listed() {
    let mut ds = DataSet::new("missing-subject");
    let subject =
        json!({"mediaType": OCI_MANIFEST, "size": 123, "digest": sha256(b"missing content")});
    ds.gen_manifest_full(&Gen::referrer(&subject));
    run(ds);
}

#[test]
fn descriptors_with_a_data_field_round_trip() {
    let mut ds = DataSet::new("data-field");
    ds.gen_manifest_full(&Gen {
        tag: Some("data-field"),
        set_data: true,
        ..Gen::default()
    });
    run(ds);
}

#[test]
fn non_distributable_layers_that_were_never_pushed_are_accepted() {
    let mut ds = DataSet::new("non-distributable-layers");
    let foreign = |mt: &str, size: usize| {
        let d = sha256(&random_bytes(256));
        let hex = d.trim_start_matches("sha256:").to_owned();
        json!({"mediaType": mt, "digest": d, "size": size, "urls": [format!("https://store.example.com/blobs/sha256/{hex}")]})
    };
    let g = Gen {
        tag: Some("non-distributable-image"),
        ..Gen::default()
    };
    let (l0, l1) = (
        foreign(LAYER_ND_GZIP, 123_456),
        foreign(LAYER_ND_TAR, 12_345),
    );
    let (l2, diff_id) = ds.gen_layer(1, &g);
    let diff_ids = vec![
        sha256(&random_bytes(256)),
        l1["digest"].as_str().unwrap().to_owned(),
        diff_id,
    ];
    let config = ds.gen_config(&g.platform.clone(), diff_ids, &g);
    ds.gen_manifest(config, vec![l0, l1, l2], &g);
    run(ds);
}

#[test]
fn custom_fields_in_configs_manifests_and_indexes_round_trip() {
    let mut ds = DataSet::new("custom-fields");
    ds.gen_index_full(
        &platforms(),
        &Gen {
            tag: Some("custom-fields"),
            extra_field: true,
            ..Gen::default()
        },
    );
    run(ds);
}

#[test]
fn an_image_without_layers_round_trips() {
    let mut ds = DataSet::new("no-layers");
    ds.gen_manifest_full(&Gen {
        tag: Some("no-layers"),
        layer_count: 0,
        ..Gen::default()
    });
    run(ds);
}

#[test]
fn a_manifest_of_3_9_mb_round_trips() {
    let mut ds = DataSet::new("large-manifest");
    let annotations = (0..390)
        .map(|i| {
            (
                format!("org.example.conformance.{i:03}"),
                random_text(10_000, b"abcdefghijklmnopqrstuvwxyz"),
            )
        })
        .collect();
    ds.gen_manifest_full(&Gen {
        tag: Some("large-manifest"),
        annotations,
        ..Gen::default()
    });
    let size = ds.manifests[0].1.len();
    assert!((3_900_000..4_194_304).contains(&size), "{size}");
    run(ds);
}

#[test]
fn a_sha512_index_pushed_by_digest_round_trips() {
    let mut ds = DataSet::new("sha512-index");
    ds.gen_index_full(
        &platforms(),
        &Gen {
            algo: Algo::Sha512,
            ..Gen::default()
        },
    );
    assert!(ds.manifests.iter().all(|(d, _)| d.starts_with("sha512:")));
    run(ds);
}
