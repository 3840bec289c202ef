//! Content discovery: tag lists, the catalog, and referrers.

use serde_json::json;

use crate::support::content::*;
use crate::support::Atoll;

#[test]
fn tags_list_in_lexical_order_with_pagination() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    img.push(&a, "paged", "b").expect(201, None);
    for t in ["a", "TEST0", "c", "d", "e"] {
        put_manifest(&a, "paged", t, OCI_MANIFEST, &img.manifest).expect(201, None);
    }
    let all = a.get("/v2/paged/tags/list");
    all.expect(200, None);
    assert_eq!(
        all.json(),
        json!({"name": "paged", "tags": ["TEST0", "a", "b", "c", "d", "e"]})
    );
    assert!(all.header("Link").is_none());

    let p1 = a.get("/v2/paged/tags/list?n=2");
    assert_eq!(p1.json()["tags"], json!(["TEST0", "a"]));
    assert_eq!(
        p1.header("Link"),
        Some("</v2/paged/tags/list?n=2&last=a>; rel=\"next\"")
    );
    let p2 = a.get("/v2/paged/tags/list?n=2&last=a");
    assert_eq!(p2.json()["tags"], json!(["b", "c"]));
    let p3 = a.get("/v2/paged/tags/list?n=2&last=c");
    assert_eq!(p3.json()["tags"], json!(["d", "e"]));
    assert!(p3.header("Link").is_none(), "no next page after the last");
    let last_only = a.get("/v2/paged/tags/list?last=c");
    assert_eq!(last_only.json()["tags"], json!(["d", "e"]));
    let zero = a.get("/v2/paged/tags/list?n=0");
    assert_eq!(zero.json()["tags"], json!([]));
    assert!(zero.header("Link").is_none());
    a.get("/v2/paged/tags/list?n=abc").expect(400, None);
    a.get("/v2/unknown/tags/list")
        .expect(404, Some("NAME_UNKNOWN"));
}

#[test]
fn catalog_lists_repositories_with_content() {
    let a = Atoll::start();
    let img = Image::oci(1, 10);
    for repo in ["zeta", "alpha/one", "alpha/two", "mid"] {
        img.push(&a, repo, "t").expect(201, None);
    }
    // A repository with only an upload session is not listed.
    push_blob(&a, "blobs-only", b"x");
    let all = a.get("/v2/_catalog");
    assert_eq!(
        all.json(),
        json!({"repositories": ["alpha/one", "alpha/two", "mid", "zeta"]})
    );
    let p1 = a.get("/v2/_catalog?n=3");
    assert_eq!(
        p1.json()["repositories"],
        json!(["alpha/one", "alpha/two", "mid"])
    );
    assert_eq!(
        p1.header("Link"),
        Some("</v2/_catalog?n=3&last=mid>; rel=\"next\"")
    );
    let p2 = a.get("/v2/_catalog?n=3&last=mid");
    assert_eq!(p2.json()["repositories"], json!(["zeta"]));
}

#[test]
fn referrers_list_artifacts_of_a_subject_with_filtering() {
    let a = Atoll::start();
    let subject = Image::oci(1, 10);
    push_blob(&a, "art", b"{}");
    let sbom_layer = random_bytes(50);
    let sig_layer = random_bytes(50);
    push_blob(&a, "art", &sbom_layer);
    push_blob(&a, "art", &sig_layer);
    // Referrers are pushed before their subject (allowed), and say OCI-Subject.
    let sbom = artifact(
        &subject,
        "application/vnd.example.sbom",
        &sbom_layer,
        json!({"kind": "sbom"}),
    );
    let sig = artifact(
        &subject,
        "application/vnd.example.sig",
        &sig_layer,
        json!({"kind": "sig"}),
    );
    for body in [&sbom, &sig] {
        let r = put_manifest(&a, "art", &sha256(body), OCI_MANIFEST, body);
        r.expect(201, None);
        assert_eq!(r.header("OCI-Subject"), Some(subject.digest().as_str()));
    }
    subject.push(&a, "art", "v1").expect(201, None);

    let r = a.get(&format!("/v2/art/referrers/{}", subject.digest()));
    r.expect(200, None);
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let found: Vec<_> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(found.len(), 2);
    assert!(found.contains(&sha256(&sbom)) && found.contains(&sha256(&sig)));
    let sbom_entry = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == sha256(&sbom))
        .unwrap();
    assert_eq!(sbom_entry["artifactType"], "application/vnd.example.sbom");
    assert_eq!(sbom_entry["annotations"], json!({"kind": "sbom"}));
    assert_eq!(sbom_entry["size"], sbom.len());
    assert_eq!(sbom_entry["mediaType"], OCI_MANIFEST);

    let f = a.get(&format!(
        "/v2/art/referrers/{}?artifactType=application%2Fvnd.example.sig",
        subject.digest()
    ));
    assert_eq!(f.header("OCI-Filters-Applied"), Some("artifactType"));
    let list = f.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sha256(&sig));

    // A subject with nothing referring to it: an empty index, never 404.
    let none = a.get(&format!("/v2/art/referrers/{}", sha256(b"nothing")));
    none.expect(200, None);
    assert_eq!(none.json()["manifests"], json!([]));
    a.get("/v2/art/referrers/sha256:nothex")
        .expect(400, Some("DIGEST_INVALID"));

    // Deleting the referrer removes it from the list.
    a.delete(&format!("/v2/art/manifests/{}", sha256(&sig)))
        .expect(202, None);
    let after = a.get(&format!("/v2/art/referrers/{}", subject.digest()));
    assert_eq!(after.json()["manifests"].as_array().unwrap().len(), 1);
}

#[test]
fn an_image_referrer_without_artifact_type_reports_its_config_type() {
    let a = Atoll::start();
    let subject = Image::oci(1, 10);
    let config = br#"{"a":1}"#.to_vec();
    let layer = random_bytes(20);
    push_blob(&a, "cfgtype", &config);
    push_blob(&a, "cfgtype", &layer);
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.example.config", &config),
        "layers": [descriptor("application/octet-stream", &layer)],
        "subject": descriptor(OCI_MANIFEST, &subject.manifest),
    }))
    .unwrap();
    put_manifest(&a, "cfgtype", "ref", OCI_MANIFEST, &body).expect(201, None);
    let v = a
        .get(&format!("/v2/cfgtype/referrers/{}", subject.digest()))
        .json();
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.config"
    );
    assert!(v["manifests"][0].get("annotations").is_none());
}
