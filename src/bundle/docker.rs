//! Docker archives (`docker save`, skopeo `docker-archive:`): `manifest.json` lists each
//! image's config file, its `RepoTags` and its layer tars. Older docker writes
//! `<id>/layer.tar` and `<id>.json`; skopeo writes `<digest>.tar`; docker 25 and later write an
//! OCI layout too and point `manifest.json` into `blobs/sha256/`. All three are read from
//! `manifest.json`, so the same image gives the same result whichever docker saved it.
//!
//! atoll builds the Docker schema2 manifest the way `docker push` would: the config as
//! `application/vnd.docker.container.image.v1+json`, each layer gzip-compressed as
//! `application/vnd.docker.image.rootfs.diff.tar.gzip` (one already compressed is kept as is),
//! after checking each layer's uncompressed digest against the config's `rootfs.diff_ids`.
//! Also the JSON layout of docker's own pushes (three-space indent).

use std::collections::HashMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::entries::{Body, Entry, Files, MAX_METADATA};
use super::graph::{Graph, Node};
use super::gzip;
use super::naming::{self, NameConvention};
use super::plan::Plan;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, Descriptor, DOCKER_MANIFEST};
use crate::registry::Registry;

pub const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desc<'a> {
    media_type: &'a str,
    size: u64,
    digest: String,
}

fn bad(entry: &str, why: impl std::fmt::Display) -> Error {
    Error::Bundle(format!("{entry}: {why}"))
}

/// The schema2 manifest for a config and compressed layers, as docker's push writes it. Pure.
pub fn schema2(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let desc = |mt, d: &Descriptor| Desc {
        media_type: mt,
        size: d.size,
        digest: d.digest.to_string(),
    };
    let m = Schema2 {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: desc(CONFIG_TYPE, config),
        layers: layers.iter().map(|l| desc(LAYER_TYPE, l)).collect(),
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    m.serialize(&mut ser).expect("serialising to memory");
    out
}

/// Reads `manifest.json` and builds a schema2 manifest for every image it lists.
pub fn plan(files: &mut Files, registry: &Registry) -> Result<Plan> {
    let (path, entry) = files
        .get("manifest.json")?
        .ok_or_else(|| bad("manifest.json", "missing: not a docker archive"))?;
    let bytes = files.bytes(path, entry, registry, MAX_METADATA)?;
    let list: Vec<RawEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| bad("manifest.json", format!("not valid: {e}")))?;
    if list.is_empty() {
        return Err(bad("manifest.json", "lists no images"));
    }
    let mut plan = Plan::new("Docker archive");
    let mut compressed: HashMap<Digest, Descriptor> = HashMap::new();
    for (i, raw) in list.iter().enumerate() {
        let at = format!("manifest.json: entry {i}");
        let (config, diff_ids) = config(files, registry, &raw.config, &at)?;
        if diff_ids.len() != raw.layers.len() {
            return Err(bad(
                &at,
                format!(
                    "{} layers, but its config {} lists {} diff_ids",
                    raw.layers.len(),
                    raw.config,
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in raw.layers.iter().zip(&diff_ids) {
            layers.push(self::layer(
                files,
                registry,
                layer,
                diff_id,
                &at,
                &mut compressed,
            )?);
        }
        let body = schema2(&config, &layers);
        let parsed = manifest::parse(&body, Some(DOCKER_MANIFEST))?;
        let root = Digest::sha256_of(&body);
        files.add_staged(root.clone(), registry.stage(&body)?);
        let names = raw
            .repo_tags
            .iter()
            .flatten()
            .map(|t| naming::parse_reference(t, NameConvention::Docker).map_err(|e| bad(&at, e)))
            .collect::<Result<Vec<_>>>()?;
        let mut blobs = vec![config];
        for l in layers {
            if !blobs.iter().any(|b| b.digest == l.digest) {
                blobs.push(l);
            }
        }
        let graph = Graph {
            manifests: vec![Node {
                digest: root.clone(),
                bytes: body,
                parsed,
            }],
            blobs,
            missing: Vec::new(),
        };
        plan.add(root, names, graph);
    }
    Ok(plan)
}

/// Finds an entry `manifest.json` names, and checks a digest its file name states.
fn find<'a>(files: &'a Files, path: &str, at: &str) -> Result<(String, &'a Entry)> {
    let (real, e) = files.get(path)?.ok_or_else(|| {
        bad(
            at,
            format!("names {path}, which is not a file of the bundle"),
        )
    })?;
    let name = real.rsplit('/').next().unwrap_or(real);
    if let Some(stem) = name.strip_suffix(".json") {
        let named = stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit());
        if named && stem != e.digest.hex() {
            return Err(bad(
                real,
                format!(
                    "digest mismatch: content is {}, expected sha256:{stem}",
                    e.digest
                ),
            ));
        }
    }
    Ok((real.to_owned(), e))
}

/// The config's descriptor and its `rootfs.diff_ids`.
fn config(
    files: &Files,
    registry: &Registry,
    path: &str,
    at: &str,
) -> Result<(Descriptor, Vec<Digest>)> {
    let (real, e) = find(files, path, at)?;
    let bytes = files.bytes(&real, e, registry, MAX_METADATA)?;
    let raw: RawConfig = serde_json::from_slice(&bytes)
        .map_err(|err| bad(&real, format!("not an image config: {err}")))?;
    let diff_ids = raw
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.parse::<Digest>().map_err(|err| bad(&real, err)))
        .collect::<Result<Vec<_>>>()?;
    let d = Descriptor {
        media_type: CONFIG_TYPE.into(),
        digest: e.digest.clone(),
        size: e.size,
        platform: None,
        external: false,
    };
    Ok((d, diff_ids))
}

/// A layer's compressed descriptor, after checking it against its diff_id.
fn layer(
    files: &mut Files,
    registry: &Registry,
    path: &str,
    diff_id: &Digest,
    at: &str,
    cache: &mut HashMap<Digest, Descriptor>,
) -> Result<Descriptor> {
    let (real, e) = find(files, path, at)?;
    let e = e.clone();
    let mismatch = |got: &Digest| {
        bad(
            &real,
            format!("digest mismatch: content is {got}, expected {diff_id} (the config's diff_id)"),
        )
    };
    let gz = |digest: Digest, size: u64| Descriptor {
        media_type: LAYER_TYPE.into(),
        digest,
        size,
        platform: None,
        external: false,
    };
    match &e.body {
        Body::Compressed { digest, size } => {
            if &e.digest != diff_id {
                return Err(mismatch(&e.digest));
            }
            Ok(gz(digest.clone(), *size))
        }
        Body::Staged | Body::Known if e.gzip => {
            let file = files.open(&real, &e, registry)?;
            let (inner, _) =
                gzip::uncompressed_digest(file).ctx(|| format!("decompressing {real}"))?;
            if &inner != diff_id {
                return Err(mismatch(&inner));
            }
            Ok(gz(e.digest.clone(), e.size))
        }
        Body::Staged | Body::Known => {
            if &e.digest != diff_id {
                return Err(mismatch(&e.digest));
            }
            if let Some(d) = cache.get(diff_id) {
                return Ok(d.clone());
            }
            let mut src = files.open(&real, &e, registry)?;
            // Compressed, it comes to about its size at most.
            let ingest = registry.ingest_for(e.size, &real, Algorithm::Sha256)?;
            let mut enc = gzip::encoder(ingest);
            copy(&mut src, &mut enc).ctx(|| format!("compressing {real}"))?;
            let done = enc
                .finish()
                .ctx(|| format!("compressing {real}"))?
                .finish()?;
            files.add_staged(done.digest.clone(), done.staged);
            let d = gz(done.digest, done.len);
            cache.insert(diff_id.clone(), d.clone());
            Ok(d)
        }
        Body::Memory(_) => Err(bad(&real, "is not a layer tar")),
        Body::Skipped => Err(super::files::not_kept(&real)),
    }
}

fn copy(r: &mut dyn Read, w: &mut dyn Write) -> std::io::Result<u64> {
    std::io::copy(r, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_reads_like_a_docker_push() {
        let d = |b: &[u8]| Descriptor {
            media_type: String::new(),
            digest: Digest::sha256_of(b),
            size: b.len() as u64,
            platform: None,
            external: false,
        };
        let body = schema2(&d(b"config"), &[d(b"layer")]);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with("{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n   \"config\": {\n      \"mediaType\": \"application/vnd.docker.container.image.v1+json\",\n      \"size\": 6,"), "{text}");
        let m = manifest::parse(&body, None).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        assert_eq!(m.layers[0].media_type, LAYER_TYPE);
        assert_eq!(m.layers[0].digest, Digest::sha256_of(b"layer"));
    }
}
