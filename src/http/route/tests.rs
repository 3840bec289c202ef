//! The router's tests: the distribution spec's URL table, names of any depth (route words
//! in them included), percent-encoded digests, the error each kind of bad input gets, and which
//! endpoints write, delete and need a login.

use super::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ID: &str = "0123456789abcdef0123456789abcdef";

fn parse(method: Method, path: &str, query: Option<&str>) -> Result<Endpoint> {
    Endpoint::parse(&method, path, query)
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn digest() -> Digest {
    D.parse().unwrap()
}

/// The URL table of the distribution spec's endpoint list (end-1 .. end-13).
#[test]
fn routes_every_spec_endpoint() {
    use Method::*;
    let tag = |t: &str| Reference::Tag(t.parse().unwrap());
    let table: Vec<(Method, String, Option<String>, Endpoint)> = vec![
        (Get, "/v2/".into(), None, Endpoint::ApiBase),
        (Get, "/v2".into(), None, Endpoint::ApiBase),
        (
            Get,
            "/v2/a/b/c/blobs/".to_owned() + D,
            None,
            Endpoint::GetBlob {
                name: name("a/b/c"),
                digest: digest(),
                head: false,
            },
        ),
        (
            Head,
            "/v2/a/blobs/".to_owned() + D,
            None,
            Endpoint::GetBlob {
                name: name("a"),
                digest: digest(),
                head: true,
            },
        ),
        (
            Get,
            "/v2/org/team/app/manifests/v1.0".into(),
            None,
            Endpoint::GetManifest {
                name: name("org/team/app"),
                reference: tag("v1.0"),
                head: false,
            },
        ),
        (
            Get,
            "/v2/a/manifests/".to_owned() + D,
            None,
            Endpoint::GetManifest {
                name: name("a"),
                reference: Reference::Digest(digest()),
                head: false,
            },
        ),
        (
            Post,
            "/v2/a/b/blobs/uploads/".into(),
            None,
            Endpoint::StartUpload {
                name: name("a/b"),
                digest: None,
                mount: None,
            },
        ),
        (
            Post,
            "/v2/a/b/blobs/uploads".into(),
            Some(format!("digest={D}")),
            Endpoint::StartUpload {
                name: name("a/b"),
                digest: Some(digest()),
                mount: None,
            },
        ),
        (
            Patch,
            format!("/v2/a/b/blobs/uploads/{ID}"),
            None,
            Endpoint::PatchUpload {
                name: name("a/b"),
                id: ID.into(),
            },
        ),
        (
            Put,
            format!("/v2/a/b/blobs/uploads/{ID}"),
            Some(format!("digest={D}")),
            Endpoint::FinishUpload {
                name: name("a/b"),
                id: ID.into(),
                digest: digest(),
            },
        ),
        (
            Get,
            format!("/v2/a/b/blobs/uploads/{ID}"),
            None,
            Endpoint::UploadStatus {
                name: name("a/b"),
                id: ID.into(),
            },
        ),
        (
            Delete,
            format!("/v2/a/b/blobs/uploads/{ID}"),
            None,
            Endpoint::CancelUpload {
                name: name("a/b"),
                id: ID.into(),
            },
        ),
        (
            Put,
            "/v2/a/manifests/latest".into(),
            Some("tag=x&tag=y".into()),
            Endpoint::PutManifest {
                name: name("a"),
                reference: tag("latest"),
                tags: vec!["x".parse().unwrap(), "y".parse().unwrap()],
            },
        ),
        (
            Get,
            "/v2/a/b/tags/list".into(),
            Some("n=10&last=v1".into()),
            Endpoint::ListTags {
                name: name("a/b"),
                page: Page {
                    n: Some(10),
                    last: Some("v1".into()),
                },
            },
        ),
        (
            Delete,
            "/v2/a/manifests/latest".into(),
            None,
            Endpoint::DeleteManifest {
                name: name("a"),
                reference: tag("latest"),
            },
        ),
        (
            Delete,
            "/v2/a/blobs/".to_owned() + D,
            None,
            Endpoint::DeleteBlob {
                name: name("a"),
                digest: digest(),
            },
        ),
        (
            Post,
            "/v2/to/blobs/uploads/".into(),
            Some(format!("mount={D}&from=other/repo")),
            Endpoint::StartUpload {
                name: name("to"),
                digest: None,
                mount: Some(Mount {
                    digest: digest(),
                    from: Some(name("other/repo")),
                }),
            },
        ),
        (
            Post,
            "/v2/to/blobs/uploads/".into(),
            Some(format!("mount={D}")),
            Endpoint::StartUpload {
                name: name("to"),
                digest: None,
                mount: Some(Mount {
                    digest: digest(),
                    from: None,
                }),
            },
        ),
        (
            Get,
            "/v2/a/referrers/".to_owned() + D,
            Some("artifactType=application%2Fvnd.x".into()),
            Endpoint::Referrers {
                name: name("a"),
                digest: digest(),
                artifact_type: Some("application/vnd.x".into()),
            },
        ),
        (
            Get,
            "/v2/_catalog".into(),
            Some("n=5".into()),
            Endpoint::Catalog(Page {
                n: Some(5),
                last: None,
            }),
        ),
        (Get, "/healthz".into(), None, Endpoint::Health),
    ];
    for (method, path, query, want) in table {
        assert_eq!(
            parse(method, &path, query.as_deref()).unwrap(),
            want,
            "{path}"
        );
    }
}

#[test]
fn names_may_contain_route_words() {
    let e = parse(Method::Get, "/v2/foo/manifests/manifests/latest", None).unwrap();
    assert!(
        matches!(e, Endpoint::GetManifest { ref name, .. } if name.as_str() == "foo/manifests")
    );
    let e = parse(Method::Get, &format!("/v2/x/blobs/uploads/blobs/{D}"), None).unwrap();
    assert!(matches!(e, Endpoint::GetBlob { ref name, .. } if name.as_str() == "x/blobs/uploads"));
    let e = parse(Method::Get, "/v2/tags/tags/list", None).unwrap();
    assert!(matches!(e, Endpoint::ListTags { ref name, .. } if name.as_str() == "tags"));
}

#[test]
fn percent_encoded_digests_are_decoded() {
    let path = format!("/v2/a/blobs/{}", D.replace(':', "%3A"));
    assert!(matches!(
        parse(Method::Get, &path, None).unwrap(),
        Endpoint::GetBlob { .. }
    ));
}

#[test]
fn bad_input_gets_the_right_error() {
    let cases: Vec<(Method, String, Option<String>, &str, u16)> = vec![
        (
            Method::Get,
            "/v2/UPPER/tags/list".into(),
            None,
            "NAME_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a/../b/tags/list".into(),
            None,
            "NAME_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a//b/tags/list".into(),
            None,
            "NAME_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a%2F..%2Fb/tags/list".into(),
            None,
            "NAME_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/manifests/latest".into(),
            None,
            "NAME_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a/blobs/sha256:nothex".into(),
            None,
            "DIGEST_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a/blobs/md5:abcd".into(),
            None,
            "DIGEST_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a/manifests/-bad".into(),
            None,
            "MANIFEST_UNKNOWN",
            404,
        ),
        (
            Method::Head,
            "/v2/a/manifests/.INVALID_MANIFEST_NAME".into(),
            None,
            "MANIFEST_UNKNOWN",
            404,
        ),
        (
            Method::Put,
            "/v2/a/manifests/.INVALID".into(),
            None,
            "TAG_INVALID",
            400,
        ),
        (
            Method::Get,
            "/v2/a/blobs/uploads/../../etc".into(),
            None,
            "NOT_FOUND_OR_NAME",
            0,
        ),
        (
            Method::Patch,
            "/v2/a/blobs/uploads/not-an-id".into(),
            None,
            "BLOB_UPLOAD_UNKNOWN",
            404,
        ),
        (
            Method::Put,
            format!("/v2/a/blobs/uploads/{ID}"),
            None,
            "DIGEST_INVALID",
            400,
        ),
        (
            Method::Put,
            format!("/v2/a/blobs/uploads/{ID}"),
            Some("digest=sha256:zz".into()),
            "DIGEST_INVALID",
            400,
        ),
        (
            Method::Post,
            "/v2/a/manifests/latest".into(),
            None,
            "UNSUPPORTED",
            405,
        ),
        (
            Method::Get,
            "/v2/a/tags/list".into(),
            Some("n=-1".into()),
            "UNSUPPORTED",
            400,
        ),
        (Method::Get, "/v3/".into(), None, "UNSUPPORTED", 404),
        (
            Method::Get,
            "/v2/a/unknown/thing".into(),
            None,
            "UNSUPPORTED",
            404,
        ),
        (
            Method::Get,
            "/v2/a/blobs/%zz".into(),
            None,
            "UNSUPPORTED",
            400,
        ),
    ];
    for (method, path, query, code, status) in cases {
        let err = parse(method, &path, query.as_deref()).unwrap_err();
        if status == 0 {
            assert!(err.status() >= 400, "{path}");
            continue;
        }
        assert_eq!((err.code(), err.status()), (code, status), "{path}: {err}");
    }
}

#[test]
fn classifies_writes_and_deletes() {
    let put = parse(Method::Put, "/v2/a/manifests/x", None).unwrap();
    assert!(put.is_write() && !put.is_delete());
    let del = parse(Method::Delete, &format!("/v2/a/blobs/{D}"), None).unwrap();
    assert!(del.is_write() && del.is_delete());
    let cancel = parse(Method::Delete, &format!("/v2/a/blobs/uploads/{ID}"), None).unwrap();
    assert!(cancel.is_write() && !cancel.is_delete());
    assert!(!parse(Method::Get, "/v2/", None).unwrap().is_write());
}

#[test]
fn every_endpoint_needs_the_right_access() {
    let read = [
        "/v2/".to_owned(),
        "/v2/_catalog".to_owned(),
        "/v2/a/tags/list".to_owned(),
        "/v2/a/manifests/x".to_owned(),
        format!("/v2/a/blobs/{D}"),
        format!("/v2/a/referrers/{D}"),
    ];
    for p in &read {
        assert_eq!(
            parse(Method::Get, p, None).unwrap().access(),
            Access::Read,
            "{p}"
        );
    }
    let write = [
        (Method::Put, "/v2/a/manifests/x".to_owned()),
        (Method::Delete, "/v2/a/manifests/x".to_owned()),
        (Method::Delete, format!("/v2/a/blobs/{D}")),
        (Method::Post, "/v2/a/blobs/uploads/".to_owned()),
        (Method::Get, format!("/v2/a/blobs/uploads/{ID}")),
        (Method::Patch, format!("/v2/a/blobs/uploads/{ID}")),
        (Method::Delete, format!("/v2/a/blobs/uploads/{ID}")),
    ];
    for (m, p) in write {
        assert_eq!(parse(m, &p, None).unwrap().access(), Access::Write, "{p}");
    }
    for p in ["/healthz", "/readyz", "/token"] {
        assert_eq!(
            parse(Method::Get, p, None).unwrap().access(),
            Access::Open,
            "{p}"
        );
    }
}
