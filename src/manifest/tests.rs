use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn image(extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":7}},
        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":9}}]{extra}}}"#
    )
}

#[test]
fn parses_an_oci_image_and_lists_its_references() {
    let m = parse(image("").as_bytes(), Some(OCI_MANIFEST)).unwrap();
    assert_eq!(m.kind, Kind::Image);
    assert_eq!(
        m.artifact_type.as_deref(),
        Some("application/vnd.oci.image.config.v1+json")
    );
    let kinds: Vec<_> = m
        .refs()
        .iter()
        .map(|r| (r.kind, r.digest.to_string()))
        .collect();
    assert_eq!(
        kinds,
        vec![(RefKind::Config, D1.into()), (RefKind::Layer, D2.into())]
    );
}

#[test]
fn media_type_comes_from_content_type_when_the_body_has_none() {
    let body = image("").replace(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "");
    let m = parse(
        body.as_bytes(),
        Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    )
    .unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
    let guessed = parse(body.as_bytes(), None).unwrap();
    assert_eq!(guessed.media_type, OCI_MANIFEST);
}

#[test]
fn conflicting_media_types_are_refused() {
    let err = parse(image("").as_bytes(), Some(DOCKER_MANIFEST)).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn artifacts_keep_their_artifact_type_and_subject() {
    let extra = format!(
        r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":3}},"annotations":{{"a":"b"}}"#
    );
    let m = parse(image(&extra).as_bytes(), None).unwrap();
    assert_eq!(
        m.artifact_type.as_deref(),
        Some("application/vnd.example.sbom")
    );
    assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), D1);
    assert_eq!(m.annotations.as_deref(), Some(r#"{"a":"b"}"#));
    let subject = m
        .refs()
        .into_iter()
        .find(|r| r.kind == RefKind::Subject)
        .unwrap();
    assert!(!subject.required, "a subject may be pushed later");
}

#[test]
fn parses_an_index_with_platforms() {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
        {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
        {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D2}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
    );
    let m = parse(body.as_bytes(), Some(DOCKER_LIST)).unwrap();
    assert_eq!(m.kind, Kind::Index);
    assert_eq!(m.platforms(), vec!["linux/arm64/v8", "linux/amd64"]);
    assert!(m
        .refs()
        .iter()
        .all(|r| r.kind == RefKind::Child && r.required));
}

#[test]
fn foreign_layers_with_urls_are_not_required() {
    let body = image("").replace(
        r#""mediaType":"application/vnd.oci.image.layer.v1.tar","#,
        r#""mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","urls":["https://example.com/l"],"#,
    );
    let m = parse(body.as_bytes(), None).unwrap();
    assert!(!m.refs()[1].required);
}

#[test]
fn refuses_bad_manifests_with_a_reason() {
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not a valid JSON"),
        ("[]".into(), "not a valid JSON"),
        (r#"{"schemaVersion":3}"#.into(), "schemaVersion must be 2"),
        (r#"{"schemaVersion":1,"fsLayers":[]}"#.into(), "schema1"),
        (
            image("").replace(OCI_MANIFEST, "application/x-nope"),
            "unsupported manifest media type",
        ),
        (image("").replace(D1, "sha256:abc"), "config.digest"),
        (
            image("").replace(r#""size":9"#, r#""size":-1"#),
            "layers[0].size",
        ),
        (
            image("").replace(r#""size":9"#, r#""size":"9""#),
            "layers[0].size",
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
            "no config",
        ),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#),
            "no manifests",
        ),
        (image(r#","annotations":{"a":1}"#), "annotations"),
    ];
    for (body, want) in cases {
        let err = parse(body.as_bytes(), None).unwrap_err();
        assert_eq!(err.code(), "MANIFEST_INVALID", "{body}");
        assert!(err.to_string().contains(want), "{body}: {err}");
    }
}

#[test]
fn oversized_manifests_are_413() {
    let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert_eq!(parse(&big, None).unwrap_err().status(), 413);
}
