//! Manifests of every kind: push, pull (exact bytes), delete, and what gets refused.

use http_types::Method;
use serde_json::json;

use crate::support::content::*;
use crate::support::Atoll;

#[track_caller]
fn assert_manifest(a: &Atoll, repo: &str, reference: &str, img_bytes: &[u8], media_type: &str) {
    let r = a.get(&format!("/v2/{repo}/manifests/{reference}"));
    r.expect(200, None);
    assert_eq!(r.body, img_bytes, "GET returns the exact bytes pushed");
    assert_eq!(r.header("Content-Type"), Some(media_type));
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sha256(img_bytes).as_str())
    );
    let h = a.head(&format!("/v2/{repo}/manifests/{reference}"));
    h.expect(200, None);
    assert_eq!(
        h.header("Content-Length"),
        Some(img_bytes.len().to_string().as_str())
    );
    assert_eq!(h.header("Content-Type"), Some(media_type));
    assert!(h.body.is_empty());
}

#[test]
fn oci_and_docker_images_round_trip_by_tag_and_digest() {
    let a = Atoll::start();
    for (img, repo) in [
        (Image::oci(2, 1000), "oci/img"),
        (Image::docker(3, 500), "docker/img"),
    ] {
        let r = img.push(&a, repo, "v1");
        r.expect(201, None);
        let d = img.digest();
        assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));
        assert_eq!(r.location(), format!("/v2/{repo}/manifests/{d}"));
        assert_manifest(&a, repo, "v1", &img.manifest, &img.media_type);
        assert_manifest(&a, repo, &d, &img.manifest, &img.media_type);
        // The manifest's bytes are a blob of the repository too.
        assert_eq!(a.get(&format!("/v2/{repo}/blobs/{d}")).body, img.manifest);
    }
}

#[test]
fn push_by_digest_checks_the_digest() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    img.push(&a, "bydigest", &img.digest()).expect(201, None);
    assert_manifest(&a, "bydigest", &img.digest(), &img.manifest, OCI_MANIFEST);
    let mut changed = img.manifest.clone();
    changed.push(b'\n');
    put_manifest(&a, "bydigest", &img.digest(), OCI_MANIFEST, &changed)
        .expect(400, Some("DIGEST_INVALID"));
    put_manifest(
        &a,
        "bydigest",
        "sha256:baddigeststring",
        OCI_MANIFEST,
        &img.manifest,
    )
    .expect(400, Some("DIGEST_INVALID"));
    // sha512 references are verified with sha512.
    let d512 = sha512(&img.manifest);
    put_manifest(&a, "bydigest", &d512, OCI_MANIFEST, &img.manifest).expect(201, None);
    let r = a.get(&format!("/v2/bydigest/manifests/{d512}"));
    r.expect(200, None);
    assert_eq!(r.body, img.manifest);
}

#[test]
fn the_media_type_comes_from_content_type_when_the_body_has_none() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    for b in img.blobs() {
        push_blob(&a, "nomt", b);
    }
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    v.as_object_mut().unwrap().remove("mediaType");
    let body = serde_json::to_vec(&v).unwrap();
    put_manifest(&a, "nomt", "t", OCI_MANIFEST, &body).expect(201, None);
    assert_manifest(&a, "nomt", "t", &body, OCI_MANIFEST);
}

#[test]
fn every_referenced_blob_must_be_in_the_repository() {
    let a = Atoll::start();
    let img = Image::oci(2, 100);
    push_blob(&a, "partial", &img.config);
    push_blob(&a, "partial", &img.layers[0]);
    let r = put_manifest(&a, "partial", "t", OCI_MANIFEST, &img.manifest);
    r.expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
    assert!(
        r.error_message().contains(&sha256(&img.layers[1])),
        "{}",
        r.error_message()
    );
    // Present in another repository is not enough.
    push_blob(&a, "elsewhere", &img.layers[1]);
    put_manifest(&a, "partial", "t", OCI_MANIFEST, &img.manifest)
        .expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
    a.get("/v2/partial/manifests/t")
        .expect(404, Some("MANIFEST_UNKNOWN"));
    push_blob(&a, "partial", &img.layers[1]);
    put_manifest(&a, "partial", "t", OCI_MANIFEST, &img.manifest).expect(201, None);
}

#[test]
fn a_descriptor_with_the_wrong_size_is_refused() {
    let a = Atoll::start();
    let img = Image::oci(1, 100);
    for b in img.blobs() {
        push_blob(&a, "sizes", b);
    }
    let lying = String::from_utf8(img.manifest.clone())
        .unwrap()
        .replace("\"size\": 100", "\"size\": 99");
    put_manifest(&a, "sizes", "t", OCI_MANIFEST, lying.as_bytes())
        .expect(400, Some("MANIFEST_INVALID"));
}

#[test]
fn malformed_manifests_are_manifest_invalid() {
    let a = Atoll::start();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (
            OCI_MANIFEST,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
        ),
        (
            "application/x-unknown",
            br#"{"schemaVersion":2,"config":{}}"#.to_vec(),
        ),
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion":1,"fsLayers":[]}"#.to_vec(),
        ),
    ];
    for (ct, body) in bodies {
        let r = put_manifest(&a, "bad", "t", ct, &body);
        r.expect(400, Some("MANIFEST_INVALID"));
        assert!(!r.error_message().is_empty());
    }
    a.get("/v2/bad/manifests/t").expect(404, None);
}

#[test]
fn manifests_over_4_mib_are_refused_and_large_ones_accepted() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    for b in img.blobs() {
        push_blob(&a, "huge", b);
    }
    // ~3.9 MB of annotations, as the conformance suite pushes.
    let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    let annotations: serde_json::Map<String, serde_json::Value> = (0..390)
        .map(|i| (format!("key{i}"), json!("x".repeat(10_000))))
        .collect();
    v["annotations"] = serde_json::Value::Object(annotations);
    let big = serde_json::to_vec(&v).unwrap();
    assert!(big.len() > 3_900_000 && big.len() < 4 * 1024 * 1024);
    put_manifest(&a, "huge", "big", OCI_MANIFEST, &big).expect(201, None);
    assert_eq!(a.get("/v2/huge/manifests/big").body, big);
    let too_big = vec![b' '; 4 * 1024 * 1024 + 1];
    put_manifest(&a, "huge", "toobig", OCI_MANIFEST, &too_big).expect(413, Some("SIZE_INVALID"));
    // Also when the body is streamed without a length.
    a.req(Method::Put, "/v2/huge/manifests/toobig2")
        .header("Content-Type", OCI_MANIFEST)
        .chunked(too_big)
        .send()
        .expect(413, Some("SIZE_INVALID"));
}

#[test]
fn indexes_need_their_children_and_list_every_platform() {
    let a = Atoll::start();
    let (amd, arm) = (Image::oci(1, 100), Image::oci(1, 100));
    let idx = index(OCI_INDEX, &[(&amd, "amd64"), (&arm, "arm64")]);
    amd.push(&a, "multi", &amd.digest()).expect(201, None);
    for b in arm.blobs() {
        push_blob(&a, "multi", b);
    }
    // The arm64 manifest is missing.
    put_manifest(&a, "multi", "latest", OCI_INDEX, &idx).expect(400, Some("MANIFEST_BLOB_UNKNOWN"));
    put_manifest(&a, "multi", &arm.digest(), OCI_MANIFEST, &arm.manifest).expect(201, None);
    put_manifest(&a, "multi", "latest", OCI_INDEX, &idx).expect(201, None);
    assert_manifest(&a, "multi", "latest", &idx, OCI_INDEX);
    // Docker manifest lists too, and an empty index.
    let docker = Image::docker(1, 100);
    docker.push(&a, "multi", &docker.digest()).expect(201, None);
    let dl = index(DOCKER_LIST, &[(&docker, "amd64")]);
    put_manifest(&a, "multi", "list", DOCKER_LIST, &dl).expect(201, None);
    assert_manifest(&a, "multi", "list", &dl, DOCKER_LIST);
    let empty = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    put_manifest(&a, "multi", "empty", OCI_INDEX, empty).expect(201, None);
    // A nested index.
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_INDEX, &idx)],
    }))
    .unwrap();
    put_manifest(&a, "multi", "nested", OCI_INDEX, &nested).expect(201, None);
}

#[test]
fn delete_by_tag_removes_the_tag_and_by_digest_the_manifest() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    img.push(&a, "del", "a").expect(201, None);
    put_manifest(&a, "del", "b", OCI_MANIFEST, &img.manifest).expect(201, None);
    a.delete("/v2/del/manifests/a").expect(202, None);
    a.head("/v2/del/manifests/a")
        .expect(404, Some("MANIFEST_UNKNOWN"));
    a.head("/v2/del/manifests/b").expect(200, None);
    a.delete(&format!("/v2/del/manifests/{}", img.digest()))
        .expect(202, None);
    a.head("/v2/del/manifests/b")
        .expect(404, Some("MANIFEST_UNKNOWN"));
    a.head(&format!("/v2/del/manifests/{}", img.digest()))
        .expect(404, Some("MANIFEST_UNKNOWN"));
    let tags = a.get("/v2/del/tags/list");
    tags.expect(200, None);
    assert_eq!(tags.json()["tags"], json!([]));
    a.delete(&format!("/v2/del/manifests/{}", img.digest()))
        .expect(404, Some("MANIFEST_UNKNOWN"));
    a.delete("/v2/nowhere/manifests/x")
        .expect(404, Some("NAME_UNKNOWN"));
}

#[test]
fn retagging_moves_the_tag() {
    let a = Atoll::start();
    let (one, two) = (Image::oci(1, 10), Image::oci(1, 10));
    one.push(&a, "retag", "latest").expect(201, None);
    two.push(&a, "retag", "latest").expect(201, None);
    let r = a.get("/v2/retag/manifests/latest");
    assert_eq!(r.body, two.manifest);
    // The first manifest stays, by digest.
    a.get(&format!("/v2/retag/manifests/{}", one.digest()))
        .expect(200, None);
}

#[test]
fn unknown_manifests_and_references() {
    let a = Atoll::start();
    a.get("/v2/nothing/manifests/latest")
        .expect(404, Some("NAME_UNKNOWN"));
    Image::oci(1, 10).push(&a, "some", "v1").expect(201, None);
    a.get("/v2/some/manifests/v2")
        .expect(404, Some("MANIFEST_UNKNOWN"));
    a.head("/v2/some/manifests/.INVALID_MANIFEST_NAME")
        .expect(404, None);
    a.get("/v2/some/manifests/.INVALID_MANIFEST_NAME")
        .expect(404, Some("MANIFEST_UNKNOWN"));
    a.get("/v2/some/manifests/sha256:totallywrong")
        .expect(400, Some("DIGEST_INVALID"));
    put_manifest(&a, "some", ".bad", OCI_MANIFEST, b"{}").expect(400, Some("TAG_INVALID"));
}

#[test]
fn extra_tags_with_the_tag_query_parameter() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    for b in img.blobs() {
        push_blob(&a, "qtags", b);
    }
    let r = a
        .req(
            Method::Put,
            &format!("/v2/qtags/manifests/{}?tag=a&tag=b", img.digest()),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send();
    r.expect(201, None);
    assert_eq!(r.headers_named("OCI-Tag"), vec!["a", "b"]);
    assert_eq!(a.get("/v2/qtags/manifests/b").body, img.manifest);
}

#[test]
fn an_index_nested_deeper_than_export_walks_is_refused_at_push() {
    let a = Atoll::start();
    let repo = "deep/chain";
    let img = Image::oci(1, 100);
    img.push(&a, repo, &img.digest()).expect(201, None);
    // Each index lists the one before: the fourth has 4 levels below it, the fifth 5.
    let mut below = (OCI_MANIFEST.to_owned(), img.manifest.clone());
    let mut chain = Vec::new();
    for _ in 0..5 {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [descriptor(&below.0, &below.1)],
        }))
        .unwrap();
        chain.push(body.clone());
        below = (OCI_INDEX.to_owned(), body);
    }
    for body in &chain[..4] {
        put_manifest(&a, repo, &sha256(body), OCI_INDEX, body).expect(201, None);
    }
    let refused = put_manifest(&a, repo, "too-deep", OCI_INDEX, &chain[4]);
    refused.expect(400, Some("MANIFEST_INVALID"));
    let why = String::from_utf8_lossy(&refused.body);
    assert!(why.contains("nested deeper than 4 levels"), "{why}");
    a.get(&format!("/v2/{repo}/manifests/too-deep"))
        .expect(404, Some("MANIFEST_UNKNOWN"));

    // The deepest one accepted exports, and imports elsewhere with the same digest.
    put_manifest(&a, repo, "top", OCI_INDEX, &chain[3]).expect(201, None);
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("deep.tar");
    let out = bundle.to_str().unwrap();
    crate::support::bundles::atoll_ok(&a.dir, &["--export", "deep/chain:top", "--output", out]);
    let other = work.path().join("other");
    let said = crate::support::bundles::atoll_ok(&other, &["--import", out]);
    assert!(said.contains(&sha256(&chain[3])), "{said}");
}

/// `DELETE` of a layer a tagged image names, or of a child of a tagged index, used to answer
/// 202 and leave the image unable to be pulled. What a manifest of the repository names now goes
/// only after that manifest: the delete answers 405 naming it, and the image still pulls.
#[test]
fn what_a_manifest_names_is_not_deleted_from_under_it() {
    let a = Atoll::start();
    let (amd, arm) = (Image::oci(1, 100), Image::oci(1, 100));
    amd.push(&a, "app", "amd").expect(201, None);
    arm.push(&a, "app", &arm.digest()).expect(201, None);
    let idx = index(OCI_INDEX, &[(&amd, "amd64"), (&arm, "arm64")]);
    put_manifest(&a, "app", "latest", OCI_INDEX, &idx).expect(201, None);
    let idx_digest = sha256(&idx);

    let layer = sha256(&amd.layers[0]);
    let r = a.delete(&format!("/v2/app/blobs/{layer}"));
    r.expect(405, Some("UNSUPPORTED"));
    let said = String::from_utf8_lossy(&r.body).into_owned();
    assert!(said.contains(&amd.digest()), "names the manifest: {said}");
    let r = a.delete(&format!("/v2/app/manifests/{}", arm.digest()));
    r.expect(405, Some("UNSUPPORTED"));
    let said = String::from_utf8_lossy(&r.body).into_owned();
    assert!(said.contains(&idx_digest), "names the index: {said}");
    for b in amd.blobs().into_iter().chain(arm.blobs()) {
        a.get(&format!("/v2/app/blobs/{}", sha256(b)))
            .expect(200, None);
    }
    assert_manifest(&a, "app", &arm.digest(), &arm.manifest, OCI_MANIFEST);

    // Taken apart from the top, everything goes.
    a.delete(&format!("/v2/app/manifests/{idx_digest}"))
        .expect(202, None);
    a.delete(&format!("/v2/app/manifests/{}", arm.digest()))
        .expect(202, None);
    a.delete(&format!("/v2/app/blobs/{layer}"))
        .expect(405, Some("UNSUPPORTED"));
    a.delete(&format!("/v2/app/manifests/{}", amd.digest()))
        .expect(202, None);
    a.delete(&format!("/v2/app/blobs/{layer}"))
        .expect(202, None);
    a.get(&format!("/v2/app/blobs/{layer}"))
        .expect(404, Some("BLOB_UNKNOWN"));
}
