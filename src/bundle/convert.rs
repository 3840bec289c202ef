//! Docker schema2 manifests and manifest lists rewritten as their OCI equivalents, for the OCI
//! layouts atoll exports. Pure.
//!
//! Why: skopeo and podman (containers/image) select an image in an OCI layout by
//! `org.opencontainers.image.ref.name` only among entries whose media type is an OCI manifest
//! or index; a Docker-typed entry is refused. Rewriting the original would change its digest,
//! which deployments pinned by digest must not see, so an export lists both under the same
//! name: this conversion first (what skopeo and podman pick), then the original, and the
//! conversion carries [`CONVERTED_FROM`] so that atoll's import skips it. Same blobs; only the
//! small manifest is added.

use std::collections::HashMap;

use serde_json::Value;

use super::graph::Node;
use crate::digest::Digest;
use crate::manifest::{Descriptor, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// Annotation on an index.json entry that is a conversion of the entry with this digest.
pub const CONVERTED_FROM: &str = "io.atoll.bundle.converted-from";

fn oci_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.container.image.v1+json" => {
            "application/vnd.oci.image.config.v1+json"
        }
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        DOCKER_MANIFEST => OCI_MANIFEST,
        DOCKER_LIST => OCI_INDEX,
        other => other,
    }
}

fn retype(v: &mut Value) {
    if let Some(Value::String(mt)) = v.get_mut("mediaType") {
        *mt = oci_type(mt).to_owned();
    }
}

/// Rewritten manifests: digest and bytes.
pub type Manifests = Vec<(Digest, Vec<u8>)>;

/// The OCI form of `root` if it is Docker-typed: its descriptor and every rewritten manifest
/// (children first). `nodes` is the walk of `root`, children first.
pub fn to_oci(nodes: &[Node], root: &Digest) -> Option<(Descriptor, Manifests)> {
    let mut done: HashMap<Digest, Descriptor> = HashMap::new();
    let mut out = Vec::new();
    for n in nodes {
        let mt = n.parsed.media_type.as_str();
        if mt != DOCKER_MANIFEST && mt != DOCKER_LIST {
            continue;
        }
        let mut v: Value = serde_json::from_slice(&n.bytes).ok()?;
        retype(&mut v);
        for key in ["config", "layers", "manifests"] {
            match v.get_mut(key) {
                Some(Value::Array(items)) => {
                    for item in items {
                        retype(item);
                        let child = item
                            .get("digest")
                            .and_then(Value::as_str)
                            .and_then(|d| d.parse::<Digest>().ok());
                        if let Some(c) = child.and_then(|c| done.get(&c)) {
                            item["mediaType"] = Value::from(c.media_type.as_str());
                            item["digest"] = Value::from(c.digest.to_string());
                            item["size"] = Value::from(c.size);
                        }
                    }
                }
                Some(obj @ Value::Object(_)) => retype(obj),
                _ => {}
            }
        }
        let bytes = serde_json::to_vec(&v).ok()?;
        let d = Descriptor {
            media_type: oci_type(mt).to_owned(),
            digest: Digest::sha256_of(&bytes),
            size: bytes.len() as u64,
            platform: None,
            external: false,
        };
        done.insert(n.digest.clone(), d.clone());
        out.push((d.digest.clone(), bytes));
    }
    done.remove(root).map(|d| (d, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    fn node(bytes: Vec<u8>) -> Node {
        let parsed = manifest::parse(&bytes, None).unwrap();
        Node {
            digest: Digest::sha256_of(&bytes),
            bytes,
            parsed,
        }
    }

    #[test]
    fn a_docker_list_becomes_an_oci_index_of_oci_manifests() {
        let d = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
        let image = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": d("application/vnd.docker.container.image.v1+json", b"c"),
            "layers": [d("application/vnd.docker.image.rootfs.diff.tar.gzip", b"l")],
        }))
        .unwrap();
        let mut child = d(DOCKER_MANIFEST, &image);
        child["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
        let list = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [child],
        }))
        .unwrap();
        let nodes = vec![node(image.clone()), node(list.clone())];
        let (root, out) = to_oci(&nodes, &Digest::sha256_of(&list)).unwrap();
        assert_eq!(root.media_type, OCI_INDEX);
        assert_eq!(out.len(), 2);
        let idx = manifest::parse(&out[1].1, None).unwrap();
        assert_eq!(
            idx.manifests[0].digest, out[0].0,
            "the index names the converted image"
        );
        assert_eq!(idx.manifests[0].platform.as_deref(), Some("linux/amd64"));
        let img = manifest::parse(&out[0].1, None).unwrap();
        assert_eq!(img.media_type, OCI_MANIFEST);
        assert_eq!(
            img.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(img.layers[0].digest, Digest::sha256_of(b"l"), "same blobs");
        assert!(to_oci(&nodes[..1], &Digest::sha256_of(b"other")).is_none());
    }
}
