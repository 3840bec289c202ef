//! The newer conformance suite's data sets (`testdata.go`): images, indexes, nested indexes,
//! artifacts, referrers and their subjects, custom fields, `data` fields, sha512 content. Each
//! generator records the blobs and manifests in push order, the tags, and the referrers the
//! listing of a subject must then contain.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::conformance_fixtures::{
    base64, gzip_stored, random_text, tar_bytes, BASE32, EMPTY_JSON_TYPE, LAYER_GZIP, LAYER_TAR,
    OCI_CONFIG, TYPE_EXAMPLE,
};
use super::content::{random_bytes, sha256, sha512, OCI_INDEX, OCI_MANIFEST};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    pub fn digest(self, bytes: &[u8]) -> String {
        match self {
            Algo::Sha256 => sha256(bytes),
            Algo::Sha512 => sha512(bytes),
        }
    }
}

/// The options of `genManifestFull` / `genIndexFull` (`genWith*`).
#[derive(Clone)]
pub struct Gen {
    pub algo: Algo,
    pub annotations: BTreeMap<String, String>,
    /// Add one random `org.example.<X>` annotation per manifest.
    pub annotation_uniq: bool,
    pub artifact_type: Option<&'static str>,
    pub config_media_type: Option<&'static str>,
    pub config_bytes: Option<Vec<u8>>,
    pub layer_count: usize,
    pub layer_media_type: Option<&'static str>,
    pub layer_bytes: Option<Vec<u8>>,
    pub uncompressed: bool,
    /// `data` on every descriptor.
    pub set_data: bool,
    /// A random `org.<X>` field on configs, manifests and indexes.
    pub extra_field: bool,
    pub subject: Option<Value>,
    pub tag: Option<&'static str>,
    pub platform: Value,
}

impl Default for Gen {
    fn default() -> Self {
        Gen {
            algo: Algo::Sha256,
            annotations: BTreeMap::new(),
            annotation_uniq: false,
            artifact_type: None,
            config_media_type: None,
            config_bytes: None,
            layer_count: 2,
            layer_media_type: None,
            layer_bytes: None,
            uncompressed: false,
            set_data: false,
            extra_field: false,
            subject: None,
            tag: None,
            platform: json!({"os": "linux", "architecture": "amd64"}),
        }
    }
}

impl Gen {
    /// An artifact: empty JSON config, one layer of the example type (`genWithArtifactType` etc.).
    pub fn artifact() -> Gen {
        Gen {
            artifact_type: Some(TYPE_EXAMPLE),
            config_media_type: Some(EMPTY_JSON_TYPE),
            config_bytes: Some(b"{}".to_vec()),
            layer_count: 1,
            layer_media_type: Some(TYPE_EXAMPLE),
            ..Gen::default()
        }
    }

    /// An artifact as a referrer of `subject`, annotated as the suite does.
    pub fn referrer(subject: &Value) -> Gen {
        Gen {
            annotations: BTreeMap::from([(
                "org.opencontainers.conformance".to_owned(),
                "hello conformance test".to_owned(),
            )]),
            annotation_uniq: true,
            subject: Some(subject.clone()),
            tag: Some("tagged-artifact"),
            ..Gen::artifact()
        }
    }
}

/// A referrer the listing of `subject` must contain (digest, mediaType, size, artifactType, and
/// at least these annotations).
#[derive(Clone, Debug)]
pub struct ExpectedReferrer {
    pub subject: String,
    pub digest: String,
    pub media_type: String,
    pub size: usize,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// One data set of the newer suite: blobs and manifests in push order, tags, expected referrers.
#[derive(Default)]
pub struct DataSet {
    pub name: &'static str,
    pub blobs: Vec<(String, Vec<u8>)>,
    pub manifests: Vec<(String, Vec<u8>)>,
    pub tags: Vec<(String, String)>,
    pub referrers: Vec<ExpectedReferrer>,
}

impl DataSet {
    pub fn new(name: &'static str) -> DataSet {
        DataSet {
            name,
            ..DataSet::default()
        }
    }

    /// Records a blob (once) and returns its descriptor.
    pub fn add_blob(&mut self, bytes: Vec<u8>, media_type: &str, g: &Gen) -> Value {
        let digest = g.algo.digest(&bytes);
        let mut d = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
        if g.set_data {
            d["data"] = Value::String(base64(&bytes));
        }
        if !self.blobs.iter().any(|(k, _)| *k == digest) {
            self.blobs.push((digest, bytes));
        }
        d
    }

    /// A one-file tar layer, gzipped unless `g.uncompressed`; returns the descriptor and the
    /// digest of the uncompressed tar (the config's diff_id).
    pub fn gen_layer(&mut self, n: usize, g: &Gen) -> (Value, String) {
        let text = format!(
            "Conformance test file contents for file number {n}.\nTodays lucky number is {}\n",
            u64::from_le_bytes(random_bytes(8).try_into().unwrap())
        );
        let tar = tar_bytes(&format!("./conformance-{n}.txt"), text.as_bytes());
        let diff_id = g.algo.digest(&tar);
        if g.uncompressed {
            (self.add_blob(tar, LAYER_TAR, g), diff_id)
        } else {
            (self.add_blob(gzip_stored(&tar), LAYER_GZIP, g), diff_id)
        }
    }

    pub fn gen_config(&mut self, platform: &Value, diff_ids: Vec<String>, g: &Gen) -> Value {
        let mut config = json!({
            "author": "OCI Conformance Test",
            "architecture": platform["architecture"],
            "os": platform["os"],
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if g.extra_field {
            add_extra_field(&mut config);
        }
        self.add_blob(serde_json::to_vec(&config).unwrap(), OCI_CONFIG, g)
    }

    /// An image manifest over `config` and `layers`; recorded with its tag and as a referrer.
    pub fn gen_manifest(&mut self, config: Value, layers: Vec<Value>, g: &Gen) -> Value {
        let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
        if let Some(t) = g.artifact_type {
            m["artifactType"] = json!(t);
        }
        let artifact_type = g
            .artifact_type
            .map(str::to_owned)
            .or_else(|| config["mediaType"].as_str().map(str::to_owned));
        self.finish_manifest(m, OCI_MANIFEST, artifact_type, g)
    }

    pub fn gen_manifest_full(&mut self, g: &Gen) -> Value {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for n in 0..g.layer_count {
            match g.layer_media_type {
                None => {
                    let (d, diff_id) = self.gen_layer(n, g);
                    layers.push(d);
                    diff_ids.push(diff_id);
                }
                Some(mt) => {
                    let bytes = g.layer_bytes.clone().unwrap_or_else(|| random_bytes(2048));
                    let d = self.add_blob(bytes, mt, g);
                    diff_ids.push(d["digest"].as_str().unwrap().to_owned());
                    layers.push(d);
                }
            }
        }
        let config = match g.config_media_type {
            None => self.gen_config(&g.platform.clone(), diff_ids, g),
            Some(mt) => {
                let bytes = g.config_bytes.clone().unwrap_or_default();
                self.add_blob(bytes, mt, g)
            }
        };
        self.gen_manifest(config, layers, g)
    }

    /// An index over `children`, each with its platform (`Value::Null` for none).
    pub fn gen_index(&mut self, children: Vec<(Value, Value)>, g: &Gen) -> Value {
        let manifests: Vec<Value> = children
            .into_iter()
            .map(|(mut d, platform)| {
                if !platform.is_null() {
                    d["platform"] = platform;
                }
                d
            })
            .collect();
        let mut m = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        if let Some(t) = g.artifact_type {
            m["artifactType"] = json!(t);
        }
        let artifact_type = g.artifact_type.map(str::to_owned);
        self.finish_manifest(m, OCI_INDEX, artifact_type, g)
    }

    /// An index of one fresh image per platform. As in Go, the images get every option too
    /// (subject included: they are referrers as well); the index's tag wins.
    pub fn gen_index_full(&mut self, platforms: &[Value], g: &Gen) -> Value {
        let children = platforms
            .iter()
            .map(|p| {
                let image = Gen {
                    platform: p.clone(),
                    ..g.clone()
                };
                (self.gen_manifest_full(&image), p.clone())
            })
            .collect();
        self.gen_index(children, g)
    }

    fn finish_manifest(
        &mut self,
        mut m: Value,
        media_type: &str,
        artifact_type: Option<String>,
        g: &Gen,
    ) -> Value {
        let mut annotations = g.annotations.clone();
        if g.annotation_uniq {
            annotations.insert(
                format!("org.example.{}", random_text(26, BASE32)),
                random_text(26, BASE32),
            );
        }
        if !annotations.is_empty() {
            m["annotations"] = json!(annotations);
        }
        if let Some(s) = &g.subject {
            m["subject"] = s.clone();
        }
        if g.extra_field {
            add_extra_field(&mut m);
        }
        let bytes = serde_json::to_vec(&m).unwrap();
        let digest = g.algo.digest(&bytes);
        let mut d = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
        if g.set_data {
            d["data"] = Value::String(base64(&bytes));
        }
        if let Some(s) = &g.subject {
            self.referrers.push(ExpectedReferrer {
                subject: s["digest"].as_str().unwrap().to_owned(),
                digest: digest.clone(),
                media_type: media_type.to_owned(),
                size: bytes.len(),
                artifact_type,
                annotations,
            });
        }
        if let Some(t) = g.tag {
            self.tags.retain(|(k, _)| k != t);
            self.tags.push((t.to_owned(), digest.clone()));
        }
        self.manifests.push((digest, bytes));
        d
    }
}

fn add_extra_field(v: &mut Value) {
    let obj: &mut Map<String, Value> = v.as_object_mut().expect("an object");
    obj.insert(
        format!("org.{}", random_text(26, BASE32)),
        Value::String(random_text(26, BASE32)),
    );
}
