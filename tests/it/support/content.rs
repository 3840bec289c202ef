//! Test content: random blobs, images, indexes and artifacts, and pushing them over the API.

use std::io::Read;

use http_types::Method;
use serde_json::{json, Value};

use super::{Api, Res};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

pub fn sha256(bytes: &[u8]) -> String {
    atoll::digest::Digest::sha256_of(bytes).to_string()
}

pub fn sha512(bytes: &[u8]) -> String {
    atoll::digest::Digest::of(atoll::digest::Algorithm::Sha512, bytes).to_string()
}

/// Pushes a blob with POST then one PUT; returns its digest.
pub fn push_blob(a: &impl Api, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let start = a
        .req(Method::Post, &format!("/v2/{repo}/blobs/uploads/"))
        .send();
    start.expect(202, None);
    let sep = if start.location().contains('?') {
        '&'
    } else {
        '?'
    };
    a.req(
        Method::Put,
        &format!("{}{sep}digest={digest}", start.location()),
    )
    .header("Content-Type", "application/octet-stream")
    .body(bytes.to_vec())
    .send()
    .expect(201, None);
    digest
}

pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(bytes), "size": bytes.len() })
}

fn random_layers(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| random_bytes(size)).collect()
}

/// An image: a config, some layers, and the manifest that names them.
#[derive(Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub media_type: String,
}

impl Image {
    /// An OCI image manifest with `n` random layers of `size` bytes.
    pub fn oci(n: usize, size: usize) -> Image {
        Image::build(OCI_MANIFEST, random_layers(n, size))
    }

    /// A Docker schema2 manifest.
    pub fn docker(n: usize, size: usize) -> Image {
        Image::build(DOCKER_MANIFEST, random_layers(n, size))
    }

    /// An image of manifest type `mt` (OCI or Docker) over these layers, with a fresh config.
    fn build(mt: &str, layers: Vec<Vec<u8>>) -> Image {
        let (config_mt, layer_mt) = if mt == DOCKER_MANIFEST {
            (
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            )
        };
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>() },
            "nonce": sha256(&random_bytes(16)),
        }))
        .unwrap();
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": descriptor(config_mt, &config),
            "layers": layers.iter().map(|l| descriptor(layer_mt, l)).collect::<Vec<_>>(),
        }))
        .unwrap();
        Image {
            config,
            layers,
            manifest,
            media_type: mt.to_owned(),
        }
    }

    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// The same kind of image with these layers (a fresh config and manifest).
    pub fn with_layers(&self, layers: Vec<Vec<u8>>) -> Image {
        Image::build(&self.media_type, layers)
    }

    pub fn blobs(&self) -> Vec<&Vec<u8>> {
        std::iter::once(&self.config)
            .chain(self.layers.iter())
            .collect()
    }

    /// Pushes the blobs, then the manifest by `reference` (a tag or the digest).
    pub fn push(&self, a: &impl Api, repo: &str, reference: &str) -> Res {
        for b in self.blobs() {
            push_blob(a, repo, b);
        }
        put_manifest(a, repo, reference, &self.media_type, &self.manifest)
    }
}

pub fn put_manifest(
    a: &impl Api,
    repo: &str,
    reference: &str,
    content_type: &str,
    body: &[u8],
) -> Res {
    a.req(Method::Put, &format!("/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", content_type)
        .body(body.to_vec())
        .send()
}

/// An index (OCI, or Docker manifest list) over images, one platform each.
pub fn index(media_type: &str, children: &[(&Image, &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(img, arch)| {
            let mut d = descriptor(&img.media_type, &img.manifest);
            d["platform"] = json!({ "os": "linux", "architecture": arch });
            d
        })
        .collect();
    serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests }),
    )
    .unwrap()
}

/// An artifact manifest (OCI 1.1 style: empty config, `artifactType`) referring to `subject`.
pub fn artifact(subject: &Image, artifact_type: &str, layer: &[u8], annotations: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2 },
        "layers": [descriptor("application/octet-stream", layer)],
        "subject": descriptor(&subject.media_type, &subject.manifest),
        "annotations": annotations,
    }))
    .unwrap()
}
