//! End to end, the pull-through cache as docker uses it: a dockerd of the test's own with
//! `--registry-mirror` pointing at atoll pulls a Docker-Hub-style name (`library/...`) that
//! atoll fetches from a local upstream atoll; then pulls it again with the upstream gone.

use std::process::Command;

use crate::support::content::sha256;
use crate::support::layout::busybox_image;
use crate::support::tools::{have, run, Dockerd};
use crate::support::Atoll;

fn stdout(c: &mut Command) -> String {
    String::from_utf8_lossy(&run(c).stdout).trim().to_owned()
}

#[test]
fn docker_pulls_through_its_registry_mirror_and_again_with_the_uplink_gone() {
    let mut upstream = Atoll::start();
    let token = format!(
        "atoll-mirror-{}",
        &sha256(upstream.addr.to_string().as_bytes())[7..19]
    );
    let img = busybox_image(&token);
    // `docker pull NAME:1` asks its mirror for library/NAME, as for Docker Hub.
    let name = format!("mirror-e2e-{}", &token[13..]);
    img.push(&upstream, &format!("library/{name}"), "1")
        .expect(201, None);

    let cache = Atoll::start_with(&["--upstream", &format!("http://{}", upstream.addr)]);
    let Some(dockerd) = Dockerd::start(&["--registry-mirror", &format!("http://{}", cache.addr)])
    else {
        return;
    };
    let image = format!("{name}:1");
    let pull_and_run = || {
        let _ = dockerd.docker(&["rmi", "-f", &image]).output();
        run(&mut dockerd.docker(&["pull", "-q", &image]));
        let digest = stdout(&mut dockerd.docker(&[
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            &image,
        ]));
        assert_eq!(digest, format!("{name}@{}", img.digest()));
        let out = stdout(&mut dockerd.docker(&["run", "--rm", "--network", "none", &image]));
        assert_eq!(out, token, "the pulled image runs");
    };

    pull_and_run();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let up_log = upstream.log();
    for blob in img.blobs() {
        let path = format!("/v2/library/{name}/blobs/{}\"", sha256(blob));
        let gets = up_log
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(&path))
            .count();
        assert_eq!(
            gets, 1,
            "atoll fetched each blob from the upstream once:\n{up_log}"
        );
    }

    // The uplink goes: the cached copy is served (pulling by tag, as docker does).
    upstream.kill();
    pull_and_run();
    let log = cache.log();
    assert!(
        log.contains("serving the cached"),
        "a warning says the cache served:\n{log}"
    );
}

#[test]
fn containerd_pulls_another_registrys_image_through_hosts_toml() {
    // containerd asks a mirror with `?ns=ghcr.io`: atoll picks the upstream named ghcr.io.
    let upstream = Atoll::start();
    let token = format!(
        "atoll-ns-{}",
        &sha256(upstream.addr.to_string().as_bytes())[7..19]
    );
    let img = busybox_image(&token);
    img.push(&upstream, "org/tool", "1").expect(201, None);
    let cache = Atoll::start_with(&["--upstream", &format!("ghcr.io=http://{}", upstream.addr)]);
    if !have("ctr") {
        return;
    }
    let Some(dockerd) = Dockerd::start(&[]) else {
        return;
    };
    let hosts = tempfile::tempdir().unwrap();
    let dir = hosts.path().join("ghcr.io");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"https://ghcr.io\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            cache.addr
        ),
    )
    .unwrap();
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.args(["-a", &dockerd.containerd_socket(), "-n", "atoll-e2e"])
            .args(args);
        c
    };
    run(&mut ctr(&[
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        &hosts.path().display().to_string(),
        "ghcr.io/org/tool:1",
    ]));
    let listed = stdout(&mut ctr(&["images", "ls"]));
    assert!(
        listed.contains("ghcr.io/org/tool:1") && listed.contains(&img.digest()),
        "{listed}"
    );
    let log = cache.log();
    assert!(
        log.contains("/v2/org/tool/manifests/1?ns=ghcr.io\" 200"),
        "containerd asked atoll, naming the registry:\n{log}"
    );
    // Cached under the registry's name, beside anything pushed here.
    assert_eq!(cache.get("/v2/ghcr.io/org/tool/manifests/1").status, 200);
}
