//! The content the v1.1.x Ginkgo conformance suite pushes (`setup.go`: five configs and
//! manifests, one per workflow, the chunked blob, the referrers of manifests[4] and the one of
//! manifests[3]), rebuilt as `Legacy`; and the encoders both suites' fixtures need. The newer
//! suite's data sets are built in `conformance_data`.
//!
//! The Ginkgo fixtures keep Go's shapes: field order, `MarshalIndent` with tabs, descriptors that
//! carry `"newUnspecifiedField": null`, a config descriptor with `data` and an unknown field, and
//! a manifest without `mediaType`. A registry must store and serve those bytes as they are.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde::Serialize;

use super::content::{random_bytes, sha256, OCI_INDEX, OCI_MANIFEST};

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const EMPTY_JSON_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const LAYER_ND_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";
pub const TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
pub const TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
pub const TYPE_INDEX: &str = "application/vnd.food.stand";
/// The newer suite's artifact type (`mtExampleConf`).
pub const TYPE_EXAMPLE: &str = "application/vnd.example.oci.conformance";

/// Bytes and their sha256 digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(bytes: Vec<u8>) -> Blob {
        let digest = sha256(&bytes);
        Blob { bytes, digest }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// A blob sent in two chunks, split as `setupChunkedBlob` does: `[0, size/2+1)` and the rest.
#[derive(Clone, Debug)]
pub struct ChunkedBlob {
    pub whole: Blob,
    pub chunk1: Vec<u8>,
    pub chunk2: Vec<u8>,
}

impl ChunkedBlob {
    pub fn new(size: usize) -> ChunkedBlob {
        let whole = Blob::new(random_bytes(size));
        let (a, b) = whole.bytes.split_at(size / 2 + 1);
        ChunkedBlob {
            chunk1: a.to_vec(),
            chunk2: b.to_vec(),
            whole,
        }
    }

    /// `Content-Range` of the first chunk, as the suite sends it: `0-21`, no unit.
    pub fn range1(&self) -> String {
        format!("0-{}", self.chunk1.len() - 1)
    }

    pub fn range2(&self) -> String {
        format!("{}-{}", self.chunk1.len(), self.whole.len() - 1)
    }
}

// ---- Go shapes ------------------------------------------------------------------------------

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct GoDescriptor {
    media_type: String,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    /// `[]byte` without omitempty: `null` unless set.
    new_unspecified_field: Option<String>,
}

fn go_descriptor(media_type: &str, blob: &Blob) -> GoDescriptor {
    GoDescriptor {
        media_type: media_type.to_owned(),
        digest: blob.digest.clone(),
        size: blob.len(),
        data: None,
        artifact_type: None,
        new_unspecified_field: None,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoManifest {
    schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'static str>,
    config: GoDescriptor,
    layers: Vec<GoDescriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<GoDescriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoIndex {
    schema_version: u32,
    media_type: &'static str,
    artifact_type: &'static str,
    manifests: Vec<GoDescriptor>,
    subject: GoDescriptor,
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct GoConfig {
    author: String,
    architecture: &'static str,
    os: &'static str,
    rootfs: GoRootFs,
}

#[derive(Serialize)]
struct GoRootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// `json.MarshalIndent(v, "", "\t")`.
fn go_indent(v: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("fixture serializes");
    out
}

// ---- the Ginkgo suite's fixtures --------------------------------------------------------------

/// Everything `setup.go` generates. Index `i` of `configs` and `manifests` belongs to one
/// workflow: 0 pull, 1 push, 2 and 4 discovery, 3 management.
#[derive(Clone)]
pub struct Legacy {
    pub configs: Vec<Blob>,
    pub layer: Blob,
    pub manifests: Vec<Blob>,
    /// configs[1] and no layers, and no `mediaType` field.
    pub empty_layer_manifest: Blob,
    /// testBlobA: 42 random bytes.
    pub blob_a: Blob,
    /// testBlobB, sent in two chunks.
    pub blob_b: ChunkedBlob,
    pub empty_json: Blob,
    pub ref_blob_a: Blob,
    pub ref_blob_b: Blob,
    pub refs_a_config: Blob,
    pub refs_b_config: Blob,
    pub refs_a_layer: Blob,
    pub refs_b_layer: Blob,
    /// Refers to manifests[3], which is not pushed until the management workflow.
    pub refs_c_layer: Blob,
    pub refs_index: Blob,
    /// The one annotation each referrer of manifests[4] carries, by digest.
    pub annotations: HashMap<String, String>,
    /// sha256("hello world"): never pushed.
    pub dummy_digest: String,
}

impl Legacy {
    pub fn new() -> Legacy {
        let configs: Vec<Blob> = (0..5)
            .map(|_| {
                Blob::new(go_indent(&GoConfig {
                    author: random_text(16, RANDOM_STRING_ALPHABET),
                    architecture: "amd64",
                    os: "linux",
                    rootfs: GoRootFs {
                        kind: "layers",
                        diff_ids: Vec::new(),
                    },
                }))
            })
            .collect();
        let layer = Blob::new(tar_gz(
            "test.txt",
            b"you bothered to find out what was in here\n",
        ));
        let config_descriptor = |c: &Blob| GoDescriptor {
            data: Some(base64(&c.bytes)),
            new_unspecified_field: Some(base64(b"hello world")),
            ..go_descriptor(OCI_CONFIG, c)
        };
        let manifests: Vec<Blob> = configs
            .iter()
            .map(|c| {
                Blob::new(go_indent(&GoManifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST),
                    artifact_type: None,
                    config: config_descriptor(c),
                    layers: vec![go_descriptor(LAYER_GZIP, &layer)],
                    subject: None,
                    annotations: BTreeMap::new(),
                }))
            })
            .collect();
        let empty_layer_manifest = Blob::new(go_indent(&GoManifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: config_descriptor(&configs[1]),
            layers: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        }));
        let empty_json = Blob::new(b"{}".to_vec());
        let ref_blob_a = Blob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = Blob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let mut fx = Legacy {
            refs_a_config: Blob::new(Vec::new()),
            refs_b_config: Blob::new(Vec::new()),
            refs_a_layer: Blob::new(Vec::new()),
            refs_b_layer: Blob::new(Vec::new()),
            refs_c_layer: Blob::new(Vec::new()),
            refs_index: Blob::new(Vec::new()),
            annotations: HashMap::new(),
            configs,
            layer,
            manifests,
            empty_layer_manifest,
            blob_a: Blob::new(random_bytes(42)),
            blob_b: ChunkedBlob::new(42),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            dummy_digest: sha256(b"hello world"),
        };
        fx.build_referrers();
        fx
    }

    /// The referrers: A and B by config media type and by `artifactType` (subject manifests[4]),
    /// C (subject manifests[3], no annotations), and an index of A-config and A-layer.
    fn build_referrers(&mut self) {
        let subject4 = go_descriptor(OCI_MANIFEST, &self.manifests[4]);
        let subject3 = go_descriptor(OCI_MANIFEST, &self.manifests[3]);
        let empty = go_descriptor(EMPTY_JSON_TYPE, &self.empty_json);
        let by_config = |t: &'static str, blob: &Blob, note: &str| GoManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST),
            artifact_type: None,
            config: go_descriptor(t, blob),
            layers: vec![empty.clone()],
            subject: Some(subject4.clone()),
            annotations: BTreeMap::from([(ANNOTATION_KEY.to_owned(), note.to_owned())]),
        };
        let by_type =
            |t: &'static str, blob: &Blob, subject: &GoDescriptor, note: Option<&str>| GoManifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST),
                artifact_type: Some(t),
                config: empty.clone(),
                layers: vec![go_descriptor(t, blob)],
                subject: Some(subject.clone()),
                annotations: note
                    .map(|n| BTreeMap::from([(ANNOTATION_KEY.to_owned(), n.to_owned())]))
                    .unwrap_or_default(),
            };
        let mut annotated = |m: GoManifest| {
            let blob = Blob::new(go_indent(&m));
            if let Some(v) = m.annotations.get(ANNOTATION_KEY) {
                self.annotations.insert(blob.digest.clone(), v.clone());
            }
            blob
        };
        let a_config = annotated(by_config(TYPE_A, &self.ref_blob_a, "test config a"));
        let b_config = annotated(by_config(TYPE_B, &self.ref_blob_b, "test config b"));
        let a_layer = annotated(by_type(
            TYPE_A,
            &self.ref_blob_a,
            &subject4,
            Some("test layer a"),
        ));
        let b_layer = annotated(by_type(
            TYPE_B,
            &self.ref_blob_b,
            &subject4,
            Some("test layer b"),
        ));
        let c_layer = annotated(by_type(TYPE_B, &self.ref_blob_b, &subject3, None));
        let index = Blob::new(go_indent(&GoIndex {
            schema_version: 2,
            media_type: OCI_INDEX,
            artifact_type: TYPE_INDEX,
            manifests: vec![
                go_descriptor(OCI_MANIFEST, &a_config),
                go_descriptor(OCI_MANIFEST, &a_layer),
            ],
            subject: subject4,
            annotations: BTreeMap::from([(ANNOTATION_KEY.to_owned(), "test index".to_owned())]),
        }));
        self.annotations
            .insert(index.digest.clone(), "test index".to_owned());
        self.refs_a_config = a_config;
        self.refs_b_config = b_config;
        self.refs_a_layer = a_layer;
        self.refs_b_layer = b_layer;
        self.refs_c_layer = c_layer;
        self.refs_index = index;
    }
}

impl Default for Legacy {
    fn default() -> Self {
        Legacy::new()
    }
}

// ---- small encoders -----------------------------------------------------------------------------

const RANDOM_STRING_ALPHABET: &[u8] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
/// Go's `rand.Text()` alphabet.
pub const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub fn random_text(n: usize, alphabet: &[u8]) -> String {
    random_bytes(n)
        .into_iter()
        .map(|b| alphabet[b as usize % alphabet.len()] as char)
        .collect()
}

/// A version-4-shaped UUID, lowercase (what `uuid.New()` prints).
pub fn uuid() -> String {
    let hex: String = random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON).
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn tar_bytes(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(contents.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, contents).unwrap();
    b.into_inner().unwrap()
}

fn tar_gz(name: &str, contents: &[u8]) -> Vec<u8> {
    gzip_stored(&tar_bytes(name, contents))
}

/// A valid gzip stream holding `data` in stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend([1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = block.len() as u16;
        out.push(last as u8);
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(block);
    }
    out.write_all(&crc32(data).to_le_bytes()).unwrap();
    out.write_all(&(data.len() as u32).to_le_bytes()).unwrap();
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_match_known_values() {
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
