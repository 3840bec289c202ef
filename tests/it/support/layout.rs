//! OCI image layouts on disk, for clients that read them (skopeo `oci:`), built with no
//! downloads: random images, and a runnable one around the host's static busybox.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use super::content::{descriptor, random_bytes, sha256, Image, OCI_MANIFEST};

/// Writes an OCI image layout at `dir` holding `blobs`, with `refs` (name, media type,
/// manifest bytes) in its index.json.
pub fn write(dir: &Path, refs: &[(&str, &str, &[u8])], blobs: &[&[u8]]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in blobs.iter().copied().chain(refs.iter().map(|r| r.2)) {
        let d = sha256(b);
        fs::write(dir.join("blobs/sha256").join(&d["sha256:".len()..]), b).unwrap();
    }
    let manifests: Vec<Value> = refs
        .iter()
        .map(|(name, mt, body)| {
            let mut d = descriptor(mt, body);
            d["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
            d
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A layout with one image under `tag`.
pub fn image_layout(dir: &Path, img: &Image, tag: &str) {
    let blobs: Vec<&[u8]> = img.blobs().into_iter().map(|b| b.as_slice()).collect();
    write(dir, &[(tag, &img.media_type, &img.manifest)], &blobs);
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// A runnable image: one layer with the host's static busybox as /bin/sh, whose command
/// prints `token`. Needs busybox-static (tests/run.sh installs it).
pub fn busybox_image(token: &str) -> Image {
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox (apt install busybox-static)");
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    tar.append_data(&mut dir, "bin/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", busybox.as_slice())
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_size(0);
    tar.append_link(&mut link, "bin/sh", "busybox").unwrap();
    let layer = tar.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(), "os": "linux",
        "config": { "Cmd": ["/bin/sh", "-c", format!("echo {token}")] },
        "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] },
        "nonce": sha256(&random_bytes(8)),
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    Image {
        config,
        layers: vec![layer],
        manifest,
        media_type: OCI_MANIFEST.into(),
    }
}

/// The digest index.json of a layout gives for `name`.
pub fn ref_digest(dir: &Path, name: &str) -> String {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}
