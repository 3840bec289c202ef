//! The web page's files and its JSON API (`/ui/api/`): what the page is told about
//! repositories, tags, referrers, disk, cache and GC; pagination and the name filter; the same
//! access rules as the registry API. The page in a real browser is in `e2e_ui.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use http_types::Method;
use serde_json::Value;

use crate::support::content::*;
use crate::support::{Atoll, Res};

const PASSWORD: &str = "correct horse";

fn names(v: &Value) -> Vec<String> {
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

fn tag<'a>(repo: &'a Value, name: &str) -> &'a Value {
    repo["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == name)
        .unwrap_or_else(|| panic!("no tag {name} in {repo}"))
}

fn repo(a: &Atoll, name: &str) -> Value {
    let page = a.get(&format!("/ui/api/repos?q={name}")).json();
    page["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no repository {name} in {page}"))
        .clone()
}

#[test]
fn the_page_is_a_few_static_files_that_fetch_nothing_from_elsewhere() {
    let a = Atoll::start();
    let page = a.get("/");
    page.expect(200, None);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("Content-Security-Policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(
        html.contains(r#"<script src="/ui/app.js" defer>"#),
        "{html}"
    );
    // The stylesheet comes inline (one request fewer before the first paint), allowed by its
    // hash and nothing wider.
    let css = String::from_utf8(a.get("/ui/app.css").body).unwrap();
    assert!(html.contains(&format!("<style>{css}</style>")));
    assert!(
        csp.contains("style-src 'self' 'sha256-") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(a.get("/ui/").body, page.body);
    assert_eq!(a.get("/ui").body, page.body);

    let mut weight = page.body.len();
    for (path, ty) in [
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let res = a.get(path);
        res.expect(200, None);
        assert_eq!(res.header("Content-Type"), Some(ty), "{path}");
        let text = String::from_utf8(res.body.clone()).unwrap();
        // No CDN, no web font, no remote anything: the page must work with no internet.
        for remote in [
            "src=\"http",
            "href=\"http",
            "url(",
            "@import",
            "fetch('http",
        ] {
            assert!(!text.contains(remote), "{path} refers to {remote}");
        }
        weight += res.body.len();
    }
    eprintln!("web page weight: {weight} bytes (HTML, CSS, script, icon; uncompressed)");
    assert!(weight < 32 * 1024, "the page grew to {weight} bytes");

    // Reloads revalidate: same ETag, 304, no body.
    let etag = a.get("/ui/app.js").header("ETag").unwrap().to_owned();
    let again = a
        .req(Method::Get, "/ui/app.js")
        .header("If-None-Match", &etag)
        .send();
    again.expect(304, None);
    assert!(again.body.is_empty());

    a.get("/ui/missing.js").expect(404, Some("UNSUPPORTED"));
    a.req(Method::Post, "/")
        .send()
        .expect(405, Some("UNSUPPORTED"));
    // The registry API is untouched.
    a.get("/v2/").expect(200, None);
}

/// `n` repositories `prefix-00`.. with one small image each (the blobs mounted from the first).
fn fill(a: &Atoll, prefix: &str, n: usize) -> Image {
    let img = Image::oci(1, 64);
    for i in 0..n {
        let name = format!("{prefix}-{i:02}");
        img.push(a, &name, "latest").expect(201, None);
    }
    img
}

#[test]
fn repositories_come_page_by_page_and_the_filter_runs_on_the_server() {
    let a = Atoll::start();
    fill(&a, "team/app", 25);
    let odd = Image::oci(1, 64);
    odd.push(&a, "other/x_y", "1").expect(201, None);
    odd.push(&a, "other/xzy", "1").expect(201, None);

    let mut seen = Vec::new();
    let mut url = "/ui/api/repos?n=10".to_owned();
    loop {
        let page = a.get(&url).json();
        assert!(names(&page).len() <= 10);
        seen.extend(names(&page));
        match page["next"].as_str() {
            Some(last) => url = format!("/ui/api/repos?n=10&last={last}"),
            None => break,
        }
    }
    let mut want: Vec<String> = (0..25).map(|i| format!("team/app-{i:02}")).collect();
    want.splice(0..0, ["other/x_y".to_owned(), "other/xzy".to_owned()]);
    assert_eq!(seen, want, "every repository once, in name order");

    let q = |f: &str| a.get(&format!("/ui/api/repos?q={f}&n=100")).json();
    assert_eq!(names(&q("app-1")).len(), 10);
    assert_eq!(names(&q("x_y")), vec!["other/x_y"], "_ is not a wildcard");
    assert_eq!(names(&q("APP")).len(), 25, "case does not matter");
    let none = q("nothing-here");
    assert!(names(&none).is_empty() && none["next"].is_null());
    // The default page is 20; a filter keeps pagination.
    let first = a.get("/ui/api/repos?q=app").json();
    assert_eq!(names(&first).len(), 20);
    assert_eq!(first["next"], "team/app-19");
}

#[test]
fn tags_show_type_platforms_total_size_times_and_referrers() {
    let a = Atoll::start();
    let (amd, arm) = (Image::oci(2, 1000), Image::oci(1, 3000));
    amd.push(&a, "multi", "amd").expect(201, None);
    arm.push(&a, "multi", "arm").expect(201, None);
    let idx = index(OCI_INDEX, &[(&amd, "amd64"), (&arm, "arm64")]);
    put_manifest(&a, "multi", "1.0", OCI_INDEX, &idx).expect(201, None);
    let sig = artifact(
        &amd,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        b"signature",
        serde_json::json!({}),
    );
    push_blob(&a, "multi", b"{}");
    push_blob(&a, "multi", b"signature");
    put_manifest(&a, "multi", &sha256(&sig), OCI_MANIFEST, &sig).expect(201, None);
    // Two children sharing their layers: an index's size counts each blob once.
    let twin = amd.with_layers(amd.layers.clone());
    twin.push(&a, "multi", &twin.digest()).expect(201, None);
    let pair = index(OCI_INDEX, &[(&amd, "amd64"), (&twin, "arm64")]);
    put_manifest(&a, "multi", "pair", OCI_INDEX, &pair).expect(201, None);
    let loose = Image::oci(1, 10);
    loose.push(&a, "multi", &loose.digest()).expect(201, None);

    let r = repo(&a, "multi");
    assert_eq!(r["upstream"], Value::Null, "pushed here, not cached");
    assert_eq!(r["tag_count"], 4);
    assert_eq!(r["manifest_count"], 7);
    assert_eq!(
        r["untagged"], 1,
        "the image pushed by digest; not the referrer"
    );

    let i = tag(&r, "1.0");
    assert_eq!(i["digest"], sha256(&idx));
    assert_eq!(i["media_type"], OCI_INDEX);
    assert_eq!(
        i["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let blobs = |img: &Image| -> usize {
        img.manifest.len() + img.blobs().iter().map(|b| b.len()).sum::<usize>()
    };
    assert_eq!(i["size"], idx.len() + blobs(&amd) + blobs(&arm));
    let shared = tag(&r, "pair");
    assert_eq!(
        shared["size"],
        pair.len() + blobs(&amd) + twin.manifest.len() + twin.config.len()
    );
    assert!(i["pushed_at"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(i["pulled_at"], Value::Null);

    let t = tag(&r, "amd");
    assert_eq!(t["media_type"], OCI_MANIFEST);
    assert_eq!(t["artifact_type"], Value::Null, "an image is no artifact");
    assert_eq!(t["size"], blobs(&amd));
    assert_eq!(t["referrer_count"], 1);
    let s = &t["referrers"][0];
    assert_eq!(s["digest"], sha256(&sig));
    assert_eq!(
        s["artifact_type"],
        "application/vnd.dev.cosign.artifact.sig.v1+json"
    );
    assert_eq!(s["size"], sig.len());
    assert_eq!(tag(&r, "arm")["referrers"], serde_json::json!([]));
}

#[test]
fn a_repository_shows_its_first_tags_and_pages_through_the_rest() {
    let a = Atoll::start();
    let img = Image::oci(1, 64);
    let extra: String = (1..12).map(|i| format!("&tag=t{i:02}")).collect();
    for b in img.blobs() {
        push_blob(&a, "many", b);
    }
    a.req(
        Method::Put,
        &format!("/v2/many/manifests/t00?{}", &extra[1..]),
    )
    .header("Content-Type", OCI_MANIFEST)
    .body(img.manifest.clone())
    .send()
    .expect(201, None);

    let r = repo(&a, "many");
    assert_eq!(r["tag_count"], 12);
    assert_eq!(r["tags"].as_array().unwrap().len(), 10);
    assert_eq!(r["more_tags"], true);
    let rest = a.get("/ui/api/tags?repo=many&last=t09").json();
    let tags: Vec<&str> = rest["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, vec!["t10", "t11"]);
    assert!(rest["next"].is_null());
    let small = a.get("/ui/api/tags?repo=many&n=5").json();
    assert_eq!(small["next"], "t04");

    a.get("/ui/api/tags?repo=nope")
        .expect(404, Some("NAME_UNKNOWN"));
    a.get("/ui/api/tags?repo=Bad..Name")
        .expect(400, Some("NAME_INVALID"));
}

#[test]
fn the_summary_reports_holdings_disk_cache_and_the_last_collection() {
    let a = Atoll::start_with(&["--gc-interval", "1s"]);
    let img = Image::oci(2, 500);
    img.push(&a, "app", "v1").expect(201, None);

    let end = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = a.get("/ui/api/summary").json();
        if !s["gc"].is_null() {
            break s;
        }
        assert!(Instant::now() < end, "no scheduled collection: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["holdings"]["repositories"], 1);
    assert_eq!(s["holdings"]["tags"], 1);
    let stored = img.manifest.len() + img.blobs().iter().map(|b| b.len()).sum::<usize>();
    assert_eq!(s["disk"]["stored_bytes"], stored);
    assert_eq!(s["disk"]["blobs"], 4);
    let store = s["disk"]["store"].as_str().unwrap();
    if crate::support::on_object_store() {
        assert!(store.starts_with("s3://"), "{store}");
        assert!(
            s["disk"]["free_bytes"].is_null(),
            "a bucket has no free space to show"
        );
    } else {
        assert!(store.starts_with("disk "), "{store}");
        assert!(s["disk"]["free_bytes"].as_u64().unwrap() > 0);
        assert!(
            s["disk"]["total_bytes"].as_u64().unwrap() >= s["disk"]["free_bytes"].as_u64().unwrap()
        );
    }
    assert!(s["gc"]["at"].as_i64().unwrap() >= s["started_at"].as_i64().unwrap());
    assert_eq!(s["gc"]["dry_run"], false);
    assert_eq!(
        s["gc"]["deleted_manifests"], 0,
        "the grace window keeps everything"
    );
    assert!(s["gc"]["summary"].as_str().unwrap().starts_with("gc: kept"));

    let c = &s["cache"];
    assert_eq!(c["configured"], false, "no upstream yet");
    assert_eq!(c["upstreams"], serde_json::json!([]));
    assert_eq!(c["hits"], 0);
    assert_eq!(c["hit_rate"], Value::Null);
    assert_eq!(c["bytes_cached"], 0);
    assert!(c.get("next_eviction").is_some());

    // An open registry: anyone may delete, unless the operator said otherwise.
    assert_eq!(s["logins"], false);
    assert_eq!(s["user"], Value::Null);
    assert_eq!(s["can_delete"], true);
}

fn htpasswd(dir: &Path) -> String {
    let path = dir.join("htpasswd");
    let line = format!("alice:{}\n", bcrypt::hash(PASSWORD, 4).unwrap());
    std::fs::write(&path, line).unwrap();
    path.to_str().unwrap().to_owned()
}

fn start_with_logins(extra: &[&str]) -> (Atoll, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path());
    let mut args = vec!["--htpasswd", file.as_str()];
    args.extend_from_slice(extra);
    let a = Atoll::try_start_in(&dir.path().join("data"), &args, &[]).unwrap();
    (a, dir)
}

fn as_alice(a: &Atoll, path: &str) -> Res {
    a.req(Method::Get, path).basic("alice", PASSWORD).send()
}

#[test]
fn with_logins_the_browser_gets_the_basic_challenge() {
    let (a, _dir) = start_with_logins(&[]);
    for path in ["/", "/ui/app.js", "/ui/api/summary", "/ui/api/repos"] {
        let res = a.get(path);
        res.expect(401, Some("UNAUTHORIZED"));
        assert_eq!(
            res.header("WWW-Authenticate"),
            Some("Basic realm=\"atoll\"")
        );
        as_alice(&a, path).expect(200, None);
    }
    let s = as_alice(&a, "/ui/api/summary").json();
    assert_eq!(s["user"], "alice");
    assert_eq!(s["logins"], true);
    assert_eq!(s["can_delete"], true);
    let back = as_alice(&a, "/login");
    back.expect(303, None);
    assert_eq!(back.header("Location"), Some("/"));
    a.get("/healthz").expect(200, None);
}

#[test]
fn with_anonymous_pulls_the_page_reads_without_a_login_and_offers_no_delete() {
    let (a, _dir) = start_with_logins(&["--anonymous-pull"]);
    a.get("/").expect(200, None);
    a.get("/ui/api/repos").expect(200, None);
    let s = a.get("/ui/api/summary").json();
    assert_eq!(s["user"], Value::Null);
    assert_eq!(s["can_delete"], false, "anonymous clients never delete");
    // Signing in: the API's challenge is a Bearer one here, which browsers do not answer, so
    // /login answers with Basic; once signed in, back to the page, allowed to delete.
    let login = a.get("/login");
    login.expect(401, None);
    assert_eq!(
        login.header("WWW-Authenticate"),
        Some("Basic realm=\"atoll\"")
    );
    as_alice(&a, "/login").expect(303, None);
    assert_eq!(as_alice(&a, "/ui/api/summary").json()["can_delete"], true);
    a.req(Method::Get, "/login")
        .basic("alice", "guess")
        .send()
        .expect(401, Some("UNAUTHORIZED"));
}

#[test]
fn delete_is_offered_only_when_the_operator_allows_deletes() {
    for (flags, read_only) in [
        (vec!["--anonymous-pull", "--no-delete"], false),
        (vec!["--anonymous-pull", "--read-only"], true),
    ] {
        let (a, _dir) = start_with_logins(&flags);
        let s = as_alice(&a, "/ui/api/summary").json();
        assert_eq!(s["can_delete"], false, "{flags:?}");
        assert_eq!(s["read_only"], read_only, "{flags:?}");
    }
    let open = Atoll::start_with(&["--no-delete"]);
    assert_eq!(open.get("/ui/api/summary").json()["can_delete"], false);
    // An open registry has no one to sign in: /login goes straight back to the page.
    open.get("/login").expect(303, None);
}

/// Pulls an image through a caching atoll (manifest, then each blob), and waits until the
/// blobs' fills have committed (the last byte reaches the client just before).
pub(crate) fn pull_through(a: &Atoll, repo: &str, tag: &str, img: &Image) {
    a.get(&format!("/v2/{repo}/manifests/{tag}"))
        .expect(200, None);
    for b in img.blobs() {
        a.get(&format!("/v2/{repo}/blobs/{}", sha256(b)))
            .expect(200, None);
    }
    let want: usize = img.manifest.len() + img.blobs().iter().map(|b| b.len()).sum::<usize>();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = a.get(&format!("/ui/api/repos?q={repo}")).json();
        let held = a.get("/ui/api/summary").json()["cache"]["bytes_cached"].clone();
        if r["repositories"][0]["tags"][0]["size"] == want && held.as_u64() >= Some(want as u64) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{repo}: the fills did not commit: {r}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_cache_panel_reports_upstreams_hits_bytes_and_the_next_eviction() {
    let up = Atoll::start();
    let img = Image::oci(2, 5_000);
    img.push(&up, "library/app", "1").expect(201, None);
    let url = format!("http://{}", up.addr);
    let named = format!("mirror.test={url}");
    let a = Atoll::start_with(&[
        "--upstream",
        &url,
        "--upstream",
        &named,
        "--cache-max-bytes",
        "1G",
    ]);
    let s = a.get("/ui/api/summary").json();
    let c = &s["cache"];
    assert_eq!(c["configured"], true);
    assert_eq!(c["hit_rate"], Value::Null, "no lookups yet");
    assert!(
        c["next_eviction"].as_i64().unwrap() > s["now"].as_i64().unwrap(),
        "eviction is scheduled: {c}"
    );
    assert_eq!(c["max_bytes"], 1u64 << 30);
    assert_eq!(c["upstreams"].as_array().unwrap().len(), 2, "{c}");
    assert_eq!(c["upstreams"][0]["upstream"], up.addr.to_string());
    assert_eq!(c["upstreams"][0]["default"], true);
    assert_eq!(c["upstreams"][1]["upstream"], "mirror.test");
    assert_eq!(c["upstreams"][1]["repositories"], 0);

    pull_through(&a, "library/app", "1", &img);
    a.get("/v2/library/app/manifests/1").expect(200, None);
    let stored = img.manifest.len() + img.blobs().iter().map(|b| b.len()).sum::<usize>();
    let s = a.get("/ui/api/summary").json();
    let c = &s["cache"];
    assert_eq!(c["repositories"], 1);
    assert_eq!(c["bytes_cached"], stored, "{c}");
    assert_eq!(c["upstreams"][0]["repositories"], 1);
    assert_eq!(c["upstreams"][0]["bytes"], stored);
    assert_eq!(c["misses"], 4, "the manifest and three blobs: {c}");
    assert_eq!(c["hits"], 1, "the second pull by tag: {c}");
    assert_eq!(c["hit_rate"], 0.2);
    // The repository says where it came from.
    assert_eq!(repo(&a, "library/app")["upstream"], up.addr.to_string());
}
