//! An OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as skopeo
//! (`oci:`, `oci-archive:`), podman (`save --format oci-archive`), buildah, containerd and
//! atoll's own export write it: each `index.json` entry is an image or an index with every
//! platform, named by its annotations.

use serde::Deserialize;
use std::collections::HashMap;

use super::convert::CONVERTED_FROM;
use super::entries::Files;
use super::graph;
use super::naming::{self, Found, NameConvention};
use super::plan::Plan;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, MAX_MANIFEST_BYTES};
use crate::registry::Registry;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

fn bad(entry: &str, why: impl std::fmt::Display) -> Error {
    Error::Bundle(format!("{entry}: {why}"))
}

/// The names `index.json` gives an entry: containerd's full name, else the OCI `ref.name`. A
/// name that states another digest than the entry's is still taken (its repository and tag),
/// with a warning: the entry's own digest is what was verified, and what gets imported.
fn names(
    a: &HashMap<String, String>,
    entry: &Digest,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Found>> {
    let (key, name) = match (a.get(CONTAINERD_NAME), a.get(REF_NAME)) {
        (Some(n), _) => (CONTAINERD_NAME, n),
        (None, Some(n)) => (REF_NAME, n),
        (None, None) => return Ok(Vec::new()),
    };
    let found = match key {
        CONTAINERD_NAME => naming::parse_reference(name, NameConvention::Docker),
        _ => naming::oci_ref_name(name),
    }
    .map_err(|e| bad(at, e))?;
    if let Some(d) = found.digest.as_ref().filter(|d| *d != entry) {
        warnings.push(format!(
            "{at}: {key} {name:?} pins {d}, not the manifest it annotates, {entry}: imported \
             by the manifest's own digest"
        ));
    }
    Ok(vec![found])
}

/// Reads `index.json` and walks every image it lists.
pub fn plan(
    files: &Files,
    registry: &Registry,
    holds: &dyn Fn(&Digest) -> Result<Option<u64>>,
) -> Result<Plan> {
    let (path, entry) = files
        .get("index.json")?
        .ok_or_else(|| bad("index.json", "missing: not an OCI image layout"))?;
    let bytes = files.bytes(path, entry, registry, super::entries::MAX_METADATA)?;
    let index: RawIndex =
        serde_json::from_slice(&bytes).map_err(|e| bad("index.json", format!("not valid: {e}")))?;
    if index.schema_version != Some(2) {
        return Err(bad("index.json", "schemaVersion must be 2"));
    }
    if index.manifests.is_empty() {
        return Err(bad("index.json", "lists no images"));
    }
    let mut plan = Plan::new("OCI image layout");
    for (i, raw) in index.manifests.iter().enumerate() {
        let at = format!("index.json: manifests[{i}]");
        // An OCI form atoll's export added for skopeo and podman: import the original.
        if let Some(from) = raw.annotations.get(CONVERTED_FROM) {
            if index.manifests.iter().any(|m| &m.digest == from) {
                continue;
            }
        }
        let root = Descriptor {
            media_type: raw.media_type.clone(),
            digest: raw.digest.parse().map_err(|e| bad(&at, e))?,
            size: raw.size,
            platform: None,
            external: false,
        };
        let names = names(&raw.annotations, &root.digest, &at, &mut plan.warnings)?;
        let mut load = |d: &Descriptor| -> Result<Option<Vec<u8>>> {
            match files.blob(&d.digest)? {
                Some((p, e)) => Ok(Some(files.bytes(
                    &p,
                    e,
                    registry,
                    MAX_MANIFEST_BYTES as u64,
                )?)),
                None if holds(&d.digest)?.is_some() => Ok(Some(registry.read_blob(&d.digest)?)),
                None => Ok(None),
            }
        };
        let g = graph::walk(&root, &mut load).map_err(|e| bad(&at, e))?;
        for b in &g.blobs {
            if let Some((p, e)) = files.blob(&b.digest)? {
                if e.size != b.size {
                    return Err(bad(
                        &p,
                        format!(
                            "size mismatch: the bundle has {} bytes, a manifest says {}",
                            e.size, b.size
                        ),
                    ));
                }
            }
        }
        plan.add(root.digest.clone(), names, g);
    }
    Ok(plan)
}
