//! Manifests and indexes: parse, validate, and list what they reference.
//!
//! Owns the media types atoll serves (Docker schema2 manifest and manifest list, OCI image
//! manifest and index, artifacts through `artifactType`) and the rules a pushed body must meet.
//! The bytes themselves are never rewritten: GET returns exactly what was pushed. Pure: no I/O.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Manifests above this size are refused (413), as the distribution spec suggests.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// How many levels of manifests may lie below an index: an index of images has 1, an index of
/// such indexes 2 (real ones have at most 2). The one limit for a push (`registry/manifests.rs`
/// refuses an index deeper) and for the walks of export and import (`bundle/graph.rs`), so what
/// the registry accepts it can always export, and another atoll import; the walks, which recurse,
/// stay bounded whatever a bundle claims.
pub const MAX_INDEX_DEPTH: usize = 4;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Whether a manifest lists blobs (an image or artifact) or other manifests (an index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// How a manifest refers to another piece of content. Stored in the index, used by GC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    Config,
    Layer,
    /// A manifest listed by an index.
    Child,
    /// The manifest this one is a referrer of (it may not exist yet).
    Subject,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Config => "config",
            RefKind::Layer => "layer",
            RefKind::Child => "child",
            RefKind::Subject => "subject",
        }
    }
}

/// A content descriptor, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// `os/architecture[/variant]`, for index entries that say it.
    pub platform: Option<String>,
    /// A foreign or non-distributable layer with download URLs need not be in the registry.
    pub external: bool,
}

/// A parsed, validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// What the referrers API reports: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    /// The manifest's own annotations, as JSON text, for referrers listings.
    pub annotations: Option<String>,
}

/// One edge from a manifest to content it names.
#[derive(Clone, Debug, PartialEq)]
pub struct Ref {
    pub kind: RefKind,
    pub digest: Digest,
    pub size: u64,
    /// `os/arch[/variant]` of an index entry that says it.
    pub platform: Option<String>,
    /// False for foreign layers and subjects: content that may legitimately be absent.
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<Value>,
    media_type: Option<Value>,
    artifact_type: Option<Value>,
    config: Option<Value>,
    layers: Option<Value>,
    manifests: Option<Value>,
    subject: Option<Value>,
    annotations: Option<Value>,
    // A schema1 manifest has these instead.
    fs_layers: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<Value>,
    digest: Option<Value>,
    size: Option<Value>,
    urls: Option<Value>,
    platform: Option<Value>,
}

/// Strips parameters from a Content-Type value: `a/b; charset=utf-8` -> `a/b`.
pub fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn is_known(media_type: &str) -> Option<Kind> {
    match media_type {
        DOCKER_MANIFEST | OCI_MANIFEST => Some(Kind::Image),
        DOCKER_LIST | OCI_INDEX => Some(Kind::Index),
        _ => None,
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::ManifestInvalid(msg.into())
}

/// Parses and validates a pushed manifest. `content_type` is the request's Content-Type, used
/// when the body has no `mediaType` field (umoci and podman push OCI manifests that way).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge(format!(
            "manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
            bytes.len()
        )));
    }
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not a valid JSON object: {e}")))?;
    let header_type = content_type.map(bare_media_type).filter(|t| !t.is_empty());
    let field_type = match &raw.media_type {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    if let Some(t) = field_type.or(header_type) {
        if DOCKER_SCHEMA1.contains(&t) {
            return Err(schema1());
        }
    }
    if raw.fs_layers.is_some() || raw.schema_version == Some(Value::from(1)) {
        return Err(schema1());
    }
    if raw.schema_version != Some(Value::from(2)) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let media_type = resolve_media_type(&raw, field_type, header_type)?;
    let kind = is_known(&media_type).expect("resolve_media_type returns known types");

    let subject = raw
        .subject
        .as_ref()
        .map(|v| descriptor(v, "subject"))
        .transpose()?;
    let explicit_artifact_type = match &raw.artifact_type {
        None => None,
        Some(Value::String(s)) if is_media_type(s) => Some(s.clone()),
        Some(_) => return Err(invalid("artifactType must be a media type string")),
    };
    let annotations = match &raw.annotations {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if string_map(m) => Some(Value::Object(m.clone()).to_string()),
        Some(_) => return Err(invalid("annotations must be an object of strings")),
    };

    let mut m = Manifest {
        media_type,
        kind,
        config: None,
        layers: Vec::new(),
        manifests: Vec::new(),
        subject,
        artifact_type: explicit_artifact_type,
        annotations,
    };
    match kind {
        Kind::Image => {
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest must not have a manifests list"));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("image manifest has no config descriptor"))?;
            let config = descriptor(config, "config")?;
            let layers = match &raw.layers {
                Some(v) => descriptor_list(v, "layers")?,
                None if m.media_type == DOCKER_MANIFEST => {
                    return Err(invalid("Docker image manifest has no layers list"))
                }
                None => return Err(invalid("image manifest has no layers list")),
            };
            if m.artifact_type.is_none() {
                m.artifact_type = Some(config.media_type.clone());
            }
            m.config = Some(config);
            m.layers = layers;
        }
        Kind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid("an index must not have config or layers"));
            }
            let list = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("index has no manifests list"))?;
            m.manifests = descriptor_list(list, "manifests")?;
        }
    }
    Ok(m)
}

fn schema1() -> Error {
    invalid(
        "Docker schema1 manifests are not supported; push with a current client (schema2 or OCI)",
    )
}

/// The media type is the body's `mediaType` field, else the Content-Type header, else what the
/// body's shape says (an OCI manifest has `config`, an OCI index has `manifests`).
fn resolve_media_type(
    raw: &RawManifest,
    field: Option<&str>,
    header: Option<&str>,
) -> Result<String> {
    let generic = |t: &str| matches!(t, "application/json" | "application/octet-stream");
    let header = header.filter(|t| !generic(t));
    let chosen = match (field, header) {
        (Some(f), Some(h)) if f != h && is_known(h).is_some() => {
            return Err(invalid(format!(
                "mediaType {f:?} in the body does not match Content-Type {h:?}"
            )));
        }
        (Some(f), _) => f.to_owned(),
        (None, Some(h)) => h.to_owned(),
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, None) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        (None, None) => return Err(invalid("manifest has no mediaType and no Content-Type")),
    };
    if is_known(&chosen).is_none() {
        return Err(invalid(format!(
            "unsupported manifest media type {chosen:?}; atoll accepts {OCI_MANIFEST}, \
             {OCI_INDEX}, {DOCKER_MANIFEST} and {DOCKER_LIST}"
        )));
    }
    Ok(chosen)
}

fn descriptor_list(v: &Value, field: &str) -> Result<Vec<Descriptor>> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid(format!("{field} must be an array")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, d)| descriptor(d, &format!("{field}[{i}]")))
        .collect()
}

fn descriptor(v: &Value, at: &str) -> Result<Descriptor> {
    let raw = RawDescriptor::deserialize(v)
        .map_err(|e| invalid(format!("{at} is not a descriptor: {e}")))?;
    let media_type = match raw.media_type {
        Some(Value::String(s)) if is_media_type(&s) => s,
        Some(_) => return Err(invalid(format!("{at}.mediaType is not a media type"))),
        None => return Err(invalid(format!("{at} has no mediaType"))),
    };
    let digest = match raw.digest {
        Some(Value::String(s)) => s
            .parse::<Digest>()
            .map_err(|e| invalid(format!("{at}.digest: {e}")))?,
        _ => return Err(invalid(format!("{at} has no digest string"))),
    };
    let size = raw
        .size
        .as_ref()
        .and_then(Value::as_u64)
        .filter(|&s| s <= i64::MAX as u64)
        .ok_or_else(|| invalid(format!("{at}.size must be a non-negative integer")))?;
    let external = match &raw.urls {
        None | Some(Value::Null) => false,
        Some(Value::Array(urls)) => {
            if !urls.iter().all(Value::is_string) {
                return Err(invalid(format!("{at}.urls must be strings")));
            }
            !urls.is_empty() && is_foreign_layer(&media_type)
        }
        Some(_) => return Err(invalid(format!("{at}.urls must be an array"))),
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
        platform: raw.platform.as_ref().and_then(platform_string),
        external,
    })
}

fn is_foreign_layer(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

fn platform_string(p: &Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    })
}

/// RFC 6838 shape: `type/subtype`, restricted-name characters, optional `+suffix`.
fn is_media_type(s: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    matches!(s.split_once('/'), Some((t, sub)) if ok(t) && ok(sub))
}

fn string_map(m: &Map<String, Value>) -> bool {
    m.values().all(Value::is_string)
}

impl Manifest {
    /// Every edge from this manifest: config, layers, child manifests and subject.
    pub fn refs(&self) -> Vec<Ref> {
        let edge = |kind, d: &Descriptor, required| Ref {
            kind,
            digest: d.digest.clone(),
            size: d.size,
            platform: d.platform.clone(),
            required,
        };
        let mut out = Vec::with_capacity(self.layers.len() + self.manifests.len() + 2);
        if let Some(c) = &self.config {
            out.push(edge(RefKind::Config, c, true));
        }
        out.extend(
            self.layers
                .iter()
                .map(|l| edge(RefKind::Layer, l, !l.external)),
        );
        out.extend(self.manifests.iter().map(|c| edge(RefKind::Child, c, true)));
        if let Some(s) = &self.subject {
            out.push(edge(RefKind::Subject, s, false));
        }
        out
    }

    /// `os/arch` of each child, for indexes (what the UI and logs show).
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
