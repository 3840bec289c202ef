//! Everything an image needs, found by walking its manifests: child manifests of an index
//! (every platform), then each manifest's config and layers. Pure: manifests are loaded through
//! a callback, so import walks the bundle and export walks the registry with the same code.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Kind, Manifest, MAX_INDEX_DEPTH};

/// A manifest reached by the walk.
#[derive(Clone, Debug)]
pub struct Node {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub parsed: Manifest,
}

/// The content one root needs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Children before the manifests that list them; the root last.
    pub manifests: Vec<Node>,
    /// Configs and layers (not foreign ones), each once, in the order first met.
    pub blobs: Vec<Descriptor>,
    /// Manifests the loader could not find (their own content is then unknown).
    pub missing: Vec<Descriptor>,
}

impl Graph {
    /// Every digest the root needs: blobs, then manifests children first.
    pub fn digests(&self) -> (Vec<Digest>, Vec<Digest>) {
        (
            self.blobs.iter().map(|b| b.digest.clone()).collect(),
            self.manifests.iter().map(|m| m.digest.clone()).collect(),
        )
    }
}

/// Walks from `root`. `load` returns a manifest's bytes, or `None` if it is absent; the walk
/// checks their digest and size against the descriptor that named them.
pub fn walk(
    root: &Descriptor,
    load: &mut dyn FnMut(&Descriptor) -> Result<Option<Vec<u8>>>,
) -> Result<Graph> {
    let mut g = Graph::default();
    visit(root, load, &mut g, 0)?;
    Ok(g)
}

fn visit(
    d: &Descriptor,
    load: &mut dyn FnMut(&Descriptor) -> Result<Option<Vec<u8>>>,
    g: &mut Graph,
    depth: usize,
) -> Result<()> {
    if g.manifests.iter().any(|m| m.digest == d.digest) {
        return Ok(());
    }
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::ManifestInvalid(format!(
            "{}: indexes nested deeper than {MAX_INDEX_DEPTH} levels",
            d.digest
        )));
    }
    let Some(bytes) = load(d)? else {
        g.missing.push(d.clone());
        return Ok(());
    };
    check(d, &bytes)?;
    let parsed = manifest::parse(&bytes, Some(&d.media_type))
        .map_err(|e| Error::ManifestInvalid(format!("{}: {e}", d.digest)))?;
    match parsed.kind {
        Kind::Index => {
            for child in &parsed.manifests {
                visit(child, load, g, depth + 1)?;
            }
        }
        Kind::Image => {
            let wanted = parsed
                .config
                .iter()
                .chain(parsed.layers.iter().filter(|l| !l.external));
            for b in wanted {
                if !g.blobs.iter().any(|x| x.digest == b.digest) {
                    g.blobs.push(b.clone());
                }
            }
        }
    }
    g.manifests.push(Node {
        digest: d.digest.clone(),
        bytes,
        parsed,
    });
    Ok(())
}

/// The bytes must be what the descriptor says.
fn check(d: &Descriptor, bytes: &[u8]) -> Result<()> {
    let actual = Digest::of(d.digest.algorithm(), bytes);
    if actual != d.digest {
        return Err(Error::DigestInvalid(format!(
            "{}: digest mismatch: content is {actual}, expected {}",
            d.digest, d.digest
        )));
    }
    if bytes.len() as u64 != d.size {
        return Err(Error::SizeInvalid(format!(
            "{}: size mismatch: {} bytes, the descriptor says {}",
            d.digest,
            bytes.len(),
            d.size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
    use std::collections::HashMap;

    /// A descriptor for bytes of a known media type.
    fn descriptor_of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            platform: None,
            external: false,
        }
    }

    fn image(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
        let d = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": d("application/vnd.oci.image.config.v1+json", config),
            "layers": layers.iter().map(|l| d("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn an_index_is_walked_children_first_with_shared_blobs_once() {
        let amd = image(b"c1", &[b"base", b"app"]);
        let arm = image(b"c2", &[b"base"]);
        let children: Vec<serde_json::Value> = [&amd, &arm]
            .iter()
            .map(|b| {
                let d = descriptor_of(OCI_MANIFEST, b);
                serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size})
            })
            .collect();
        let idx = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
        }))
        .unwrap();
        let store: HashMap<Digest, Vec<u8>> = [amd.clone(), arm.clone(), idx.clone()]
            .into_iter()
            .map(|b| (Digest::sha256_of(&b), b))
            .collect();
        let g = walk(&descriptor_of(OCI_INDEX, &idx), &mut |d| {
            Ok(store.get(&d.digest).cloned())
        })
        .unwrap();
        let order: Vec<Digest> = g.manifests.iter().map(|m| m.digest.clone()).collect();
        assert_eq!(
            order,
            vec![
                Digest::sha256_of(&amd),
                Digest::sha256_of(&arm),
                Digest::sha256_of(&idx)
            ]
        );
        let blobs: Vec<Digest> = g.blobs.iter().map(|b| b.digest.clone()).collect();
        let want: Vec<Digest> = [&b"c1"[..], b"base", b"app", b"c2"]
            .iter()
            .map(|b| Digest::sha256_of(b))
            .collect();
        assert_eq!(blobs, want);
        assert!(g.missing.is_empty());
    }

    #[test]
    fn missing_and_tampered_manifests_are_reported() {
        let amd = image(b"c1", &[b"l"]);
        let d = descriptor_of(OCI_MANIFEST, &amd);
        let g = walk(&d, &mut |_| Ok(None)).unwrap();
        assert_eq!(g.missing.len(), 1);
        let e = walk(&d, &mut |_| Ok(Some(b"{}".to_vec()))).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
    }
}
