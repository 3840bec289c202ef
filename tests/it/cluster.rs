//! A cluster (issue 20): several atoll nodes on one PostgreSQL index and one bucket prefix, any
//! node serving any request. Here: a push split across nodes, the same listings everywhere, a
//! login's token honoured by every node; `contention`: one collection at a time, two nodes
//! writing one upload at once; `outage`: PostgreSQL restarted under the nodes; `reliability`:
//! nodes killed again and again while clients push and collections run; `cache`: the
//! pull-through cache fetching a blob once for the cluster.
//!
//! They need PostgreSQL and Garage, so they run only in tests/run.sh's cluster pass
//! (ATOLL_TEST_CLUSTER=1, both services up, one test at a time: `outage` restarts the
//! PostgreSQL every cluster shares); the other passes leave them out by name (`--skip
//! cluster::`), as the first pass leaves out `object_store::`. Run elsewhere, they fail saying so
//! (`support::cluster::require`) rather than pass without having run.

mod cache;
mod contention;
mod outage;
mod reliability;

use http_types::Method;
use serde_json::json;

use crate::support::cluster::Cluster;
use crate::support::content::*;
use crate::support::{Api, Req, Res};

const MIB: usize = 1 << 20;

/// A new upload in `repo` on `node`; its location.
#[track_caller]
fn start_upload(node: &impl Api, repo: &str) -> String {
    let r = node
        .req(Method::Post, &format!("/v2/{repo}/blobs/uploads/"))
        .send();
    r.expect(202, None);
    r.location()
}

/// A PATCH of `bytes` at offset `from` of the upload at `location`.
fn patch(node: &impl Api, location: &str, from: usize, bytes: &[u8]) -> Req {
    node.req(Method::Patch, location)
        .header("Content-Type", "application/octet-stream")
        .header(
            "Content-Range",
            &format!("{from}-{}", from + bytes.len() - 1),
        )
        .body(bytes.to_vec())
}

/// GET of the manifest `reference`, accepting the image's media type.
fn manifest_get(node: &impl Api, repo: &str, reference: &str, img: &Image) -> Res {
    node.req(Method::Get, &format!("/v2/{repo}/manifests/{reference}"))
        .header("Accept", &img.media_type)
        .send()
}

/// The image pulls from `node` by `reference`: the manifest's own bytes and digest, and every
/// blob with bytes that hash to its digest.
#[track_caller]
fn assert_pulls(node: &impl Api, who: &str, repo: &str, reference: &str, img: &Image) {
    let r = manifest_get(node, repo, reference, img);
    assert_eq!(
        r.status,
        200,
        "{who}: {repo}:{reference}: {}",
        r.text_lossy()
    );
    assert!(
        r.body == img.manifest,
        "{who}: {repo}:{reference}: other bytes"
    );
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(img.digest().as_str()),
        "{who}: {repo}:{reference}"
    );
    for b in img.blobs() {
        let d = sha256(b);
        let r = node
            .req(Method::Get, &format!("/v2/{repo}/blobs/{d}"))
            .send();
        assert_eq!(r.status, 200, "{who}: blob {d} of {repo}:{reference}");
        assert_eq!(sha256(&r.body), d, "{who}: blob of {repo}:{reference}");
    }
}

/// Issue 20: "POST on A, PATCH on B, PUT on C" works. A layer of 23 MiB: 20 MiB in one PATCH
/// on B (more than one 16 MiB part), 3 MiB on C, the PUT on A; it pulls whole from C, and the
/// manifest pushed on B is served on C as soon as B said 201.
#[test]
fn a_push_split_across_nodes_pulls_back_whole_from_another() {
    let c = Cluster::start(3, &[]);
    let (a, b, cn) = (c.node(0), c.node(1), c.node(2));
    let repo = "split/app";
    let (first, second) = (random_bytes(20 * MIB), random_bytes(3 * MIB));
    let layer = [first.as_slice(), second.as_slice()].concat();
    let digest = sha256(&layer);

    let loc = start_upload(a, repo);
    let r = patch(b, &loc, 0, &first).send();
    r.expect(202, None);
    assert_eq!(r.header("Range"), Some(&*format!("0-{}", first.len() - 1)));
    let r = patch(cn, &r.location(), first.len(), &second).send();
    r.expect(202, None);
    let end = format!("0-{}", layer.len() - 1);
    assert_eq!(r.header("Range"), Some(end.as_str()));
    // A knows where the upload ends, though neither PATCH went to it.
    let r = a.get(&r.location());
    r.expect(204, None);
    assert_eq!(r.header("Range"), Some(end.as_str()));
    let r = a
        .req(Method::Put, &format!("{}?digest={digest}", r.location()))
        .send();
    r.expect(201, None);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));

    let r = cn.get(&format!("/v2/{repo}/blobs/{digest}"));
    r.expect(200, None);
    assert_eq!(r.body.len(), layer.len());
    assert_eq!(sha256(&r.body), digest, "the blob's bytes on C");
    let r = b.head(&format!("/v2/{repo}/blobs/{digest}"));
    r.expect(200, None);
    assert_eq!(r.header("Content-Length"), Some(&*layer.len().to_string()));

    let img = Image::oci(0, 0).with_layers(vec![layer]);
    push_blob(b, repo, &img.config);
    put_manifest(b, repo, "v1", &img.media_type, &img.manifest).expect(201, None);
    assert_pulls(cn, "node C", repo, "v1", &img);
    assert_pulls(cn, "node C", repo, &img.digest(), &img);
}

/// The three listings a client reads (the catalog, a repository's tags, a manifest's
/// referrers) say the same on every node, and say what was pushed; a tag moved on A points to
/// its new manifest on B and C at once.
#[test]
fn every_node_lists_the_same_catalog_tags_and_referrers() {
    let c = Cluster::start(3, &[]);
    let mut shared = Vec::new();
    for i in 0..3 {
        let node = c.client(i);
        Image::oci(1, 1000)
            .push(&node, &format!("agree/r{i}"), "v1")
            .expect(201, None);
        let img = Image::oci(1, 500);
        img.push(&node, "agree/shared", &format!("n{i}"))
            .expect(201, None);
        shared.push(img);
    }
    let subject = &shared[0];
    let referrers = push_referrers(&c, subject);

    // Every node says the same, byte for byte, and what it says is what was pushed.
    let catalog = same_on_every_node(&c, "/v2/_catalog");
    assert_eq!(
        catalog["repositories"],
        json!(["agree/r0", "agree/r1", "agree/r2", "agree/shared"])
    );
    let tags = same_on_every_node(&c, "/v2/agree/r0/tags/list");
    assert_eq!(tags, json!({"name": "agree/r0", "tags": ["v1"]}));
    let tags = same_on_every_node(&c, "/v2/agree/shared/tags/list");
    assert_eq!(
        tags,
        json!({"name": "agree/shared", "tags": ["n0", "n1", "n2"]})
    );
    let refs = same_on_every_node(
        &c,
        &format!("/v2/agree/shared/referrers/{}", subject.digest()),
    );
    let mut listed: Vec<(String, String)> = refs["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {refs}"))
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (field("digest"), field("artifactType"))
        })
        .collect();
    listed.sort();
    assert_eq!(listed, referrers, "{refs}");

    // A tag moved on A is where A put it on B and C, on their first asking.
    let moved = Image::oci(1, 700);
    moved
        .push(c.node(0), "agree/shared", "n1")
        .expect(201, None);
    for i in [1, 2] {
        assert_pulls(
            c.node(i),
            &format!("node {i}"),
            "agree/shared",
            "n1",
            &moved,
        );
    }
    // The manifest it left is still there by digest.
    assert_pulls(
        c.node(2),
        "node 2",
        "agree/shared",
        &shared[1].digest(),
        &shared[1],
    );
}

/// Two artifacts about `subject` (in agree/shared), pushed through nodes 1 and 2; their digests
/// and artifact types, sorted.
fn push_referrers(c: &Cluster, subject: &Image) -> Vec<(String, String)> {
    let mut referrers = Vec::new();
    for (i, kind) in [
        (1, "application/vnd.example.sbom"),
        (2, "application/vnd.example.sig"),
    ] {
        let node = c.client(i);
        let layer = random_bytes(300);
        push_blob(&node, "agree/shared", &layer);
        push_blob(&node, "agree/shared", b"{}");
        let annotations = json!({ "pushed-through": i.to_string() });
        let art = artifact(subject, kind, &layer, annotations);
        let d = sha256(&art);
        put_manifest(&node, "agree/shared", &d, OCI_MANIFEST, &art).expect(201, None);
        referrers.push((d, kind.to_owned()));
    }
    referrers.sort();
    referrers
}

/// GET `path` answers 200 with the same body on every node; that body, as JSON.
#[track_caller]
fn same_on_every_node(c: &Cluster, path: &str) -> serde_json::Value {
    let first = c.node(0).get(path);
    first.expect(200, None);
    for (i, n) in c.nodes().iter().enumerate().skip(1) {
        let r = n.get(path);
        r.expect(200, None);
        assert!(
            r.body == first.body,
            "{path}: node {i} says {}, node 0 says {}",
            r.text_lossy(),
            first.text_lossy()
        );
    }
    first.json()
}

/// With one htpasswd file on every node, a token node A hands out opens node B and C, for
/// pushes and pulls alike; a forged one opens nothing anywhere.
#[test]
fn a_token_from_one_node_is_honoured_by_the_others() {
    const PASSWORD: &str = "correct horse";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(
        &file,
        format!("alice:{}\n", bcrypt::hash(PASSWORD, 4).unwrap()),
    )
    .unwrap();
    let c = Cluster::start(3, &["--htpasswd", file.to_str().unwrap()]);
    let repo = "team/app";
    // Without credentials no node lets a push begin: what the token opens below is its doing.
    for n in c.nodes() {
        n.req(Method::Post, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .expect(401, Some("UNAUTHORIZED"));
    }
    let token = |i: usize| {
        let r = c
            .node(i)
            .req(
                Method::Get,
                &format!("/token?service=atoll&scope=repository:{repo}:pull,push"),
            )
            .basic("alice", PASSWORD)
            .send();
        r.expect(200, None);
        format!("Bearer {}", r.json()["token"].as_str().expect("a token"))
    };
    let from_a = token(0);
    let with = |r: Req| r.header("Authorization", &from_a);

    // The blobs through B, the manifest through C, all with A's token.
    let img = Image::oci(2, 2000);
    for blob in img.blobs() {
        let d = sha256(blob);
        let r = with(
            c.node(1)
                .req(Method::Post, &format!("/v2/{repo}/blobs/uploads/")),
        );
        let r = r.send();
        r.expect(202, None);
        with(
            c.node(1)
                .req(Method::Put, &format!("{}?digest={d}", r.location())),
        )
        .body(blob.clone())
        .send()
        .expect(201, None);
    }
    with(
        c.node(2)
            .req(Method::Put, &format!("/v2/{repo}/manifests/v1")),
    )
    .header("Content-Type", &img.media_type)
    .body(img.manifest.clone())
    .send()
    .expect(201, None);
    for i in [1, 2] {
        let r = with(
            c.node(i)
                .req(Method::Get, &format!("/v2/{repo}/manifests/v1")),
        )
        .header("Accept", &img.media_type)
        .send();
        r.expect(200, None);
        assert_eq!(r.body, img.manifest, "node {i}");
        let d = sha256(&img.layers[0]);
        let r = with(c.node(i).req(Method::Get, &format!("/v2/{repo}/blobs/{d}"))).send();
        r.expect(200, None);
        assert_eq!(sha256(&r.body), d, "node {i}");
    }
    // Tokens from C open A too: one key for the whole cluster, whoever signed.
    c.node(0)
        .req(Method::Get, &format!("/v2/{repo}/manifests/v1"))
        .header("Authorization", &token(2))
        .send()
        .expect(200, None);
    // A token altered by one character is refused by every node.
    let mut forged = from_a.clone().into_bytes();
    let last = forged.last_mut().unwrap();
    *last = if *last == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    for n in c.nodes() {
        n.req(Method::Get, &format!("/v2/{repo}/manifests/v1"))
            .header("Authorization", &forged)
            .send()
            .expect(401, Some("UNAUTHORIZED"));
    }
}

/// README, "More than one box": `atoll --gc` runs from any host with the same settings. From a
/// host that is no node (a data directory of its own, empty: the blobs and the index are the
/// cluster's), a collection removes the garbage and succeeds, `--verify` passes, and what is
/// tagged still pulls.
#[test]
fn gc_and_verify_run_from_a_host_that_is_no_node() {
    let c = Cluster::start(2, &[]);
    let img = Image::oci(1, 1000);
    img.push(c.node(0), "host/app", "v1").expect(201, None);
    let garbage = push_blob(c.node(1), "host/junk", &random_bytes(1000));
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("atoll-data");
    std::fs::create_dir(&dir).unwrap();
    let cli = c.cli().on(&dir);
    let (ok, out) = cli.run(&["--gc", "--gc-grace", "0s"]);
    assert!(out.contains(&format!("delete blob {garbage}")), "{out}");
    assert!(ok, "atoll --gc from a host of its own failed:\n{out}");
    cli.verify();
    for (i, n) in c.nodes().iter().enumerate() {
        assert_pulls(n, &format!("node {i}"), "host/app", "v1", &img);
        n.head(&format!("/v2/host/junk/blobs/{garbage}"))
            .expect(404, None);
    }
}

/// A wrong index stops atoll at startup in one line that names the URL, never its password,
/// and says what PostgreSQL said: a refused password, a missing database, nothing listening.
#[test]
fn a_wrong_index_url_password_or_database_stops_atoll_at_startup_naming_it() {
    crate::support::cluster::require();
    let var = |n: &str| std::env::var(n).unwrap();
    let (host, port, password) = (
        var("ATOLL_TEST_PG_HOST"),
        var("ATOLL_TEST_PG_PORT"),
        var("ATOLL_TEST_PG_PASSWORD"),
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = format!("postgres://atoll@{host}:{port}/atoll_tests");
    let cases = [
        (
            good.clone(),
            "not-the-password",
            "password authentication failed",
        ),
        (
            format!("postgres://atoll@{host}:{port}/no_such_database"),
            password.as_str(),
            "does not exist",
        ),
        (
            format!("postgres://atoll@{closed}/atoll_tests"),
            password.as_str(),
            "Connection refused",
        ),
        (
            "mysql://atoll@db/atoll".to_owned(),
            password.as_str(),
            "give postgres://",
        ),
    ];
    for (url, pass, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoll"))
            .args([
                "--data-dir",
                dir.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env_clear()
            .env("ATOLL_INDEX", &url)
            .env("ATOLL_INDEX_PASSWORD", pass)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("atoll:")).collect();
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_eq!(lines.len(), 1, "{url}: one line: {err}");
        assert!(lines[0].contains(why), "{url}: {}", lines[0]);
        if url.starts_with("postgres") {
            assert!(lines[0].contains(&url), "names {url}: {}", lines[0]);
        }
        assert!(!err.contains(pass), "{url}: the password is in {err}");
    }
}

/// TLS to the index, as libpq's `sslmode` says: `verify-full` checks the server's certificate
/// against the roots (here `SSL_CERT_FILE`, the tests' CA) and its name, and a certificate no
/// root vouches for stops atoll at startup saying so; `require` encrypts without checking. The
/// connections are TLS (PostgreSQL's `pg_stat_ssl`).
#[test]
fn the_index_connection_is_tls_checked_as_sslmode_says() {
    crate::support::cluster::require();
    let var = |n: &str| std::env::var(n).unwrap();
    let (host, port, password, ca) = (
        var("ATOLL_TEST_PG_HOST"),
        var("ATOLL_TEST_PG_PORT"),
        var("ATOLL_TEST_PG_PASSWORD"),
        var("ATOLL_TEST_PG_CA"),
    );
    let db = format!(
        "atoll_tls_{}",
        &sha256(&random_bytes(8))["sha256:".len()..][..12]
    );
    crate::support::index::create_database(&db);
    let url = |mode: &str| format!("postgres://atoll@{host}:{port}/{db}?sslmode={mode}");
    let start = |mode: &str, roots: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let full = url(mode);
        let mut env = vec![
            ("ATOLL_INDEX", full.as_str()),
            ("ATOLL_INDEX_PASSWORD", password.as_str()),
        ];
        if let Some(r) = roots {
            env.push(("SSL_CERT_FILE", r));
        }
        let out = crate::support::Atoll::try_start_in(&dir.path().join("data"), &[], &env);
        (dir, out)
    };

    let (_dir, verified) = start("verify-full", Some(&ca));
    let verified = verified.unwrap_or_else(|log| panic!("verify-full with the CA:\n{log}"));
    push_blob(&verified, "tls/app", b"over TLS");
    let tls = crate::support::index::query_database(
        &db,
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.application_name = 'atoll'",
    );
    assert_eq!(tls.trim(), "t", "atoll's connections are TLS");
    drop(verified);

    let (_dir, refused) = start("verify-full", None);
    let log = match refused {
        Ok(_) => panic!("verify-full started with a certificate no root vouches for"),
        Err(log) => log,
    };
    let line = log
        .lines()
        .find(|l| l.starts_with("atoll:"))
        .unwrap_or(&log);
    assert!(
        line.contains(&url("verify-full").replace("?sslmode=verify-full", "")),
        "{line}"
    );
    assert!(line.contains("certificate"), "says why: {line}");

    let (_dir, encrypted) = start("require", None);
    let encrypted = encrypted.unwrap_or_else(|log| panic!("require, unchecked:\n{log}"));
    encrypted.get("/v2/").expect(200, None);
}
