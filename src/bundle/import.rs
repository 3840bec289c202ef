//! `atoll --import`: read a bundle once (every byte hashed as it is copied), understand it (OCI
//! layout or docker archive), decide the names, and hand everything to the registry to register
//! in one transaction. Until that transaction commits nothing of the bundle is visible, and a
//! failure anywhere drops the staged files.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use super::entries::{self, Container, Files};
use super::job::ImageName;
use super::naming::{self, Assigned};
use super::plan::Plan;
use super::progress::Progress;
use super::{docker, oci};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::registry::{
    Batch, Change, ImageRef, NewBlob, NewImageManifest, Registered, Registry, Source,
};
use crate::units::human_bytes as human;

/// What one import did.
pub struct Report {
    pub label: String,
    pub format: &'static str,
    pub container: Container,
    pub images: usize,
    pub registered: Registered,
    pub warnings: Vec<String>,
}

/// Imports one bundle. Every error names the bundle, and the entry where there is one.
pub fn import(registry: &Registry, path: &Path, name: Option<&ImageName>) -> Result<Report> {
    let label = path.display().to_string();
    run(registry, path, None, &label, name).map_err(|e| Error::Bundle(format!("{label}: {e}")))
}

/// Imports the bundle an export in this process writes into `pipe` (`copy.rs`); `label`
/// names it in messages.
pub fn import_pipe(registry: &Registry, pipe: std::fs::File, label: &str) -> Result<Report> {
    run(registry, Path::new(label), Some(pipe), label, None)
        .map_err(|e| Error::Bundle(format!("{label}: {e}")))
}

fn run(
    registry: &Registry,
    path: &Path,
    pipe: Option<std::fs::File>,
    label: &str,
    name: Option<&ImageName>,
) -> Result<Report> {
    let total = match pipe {
        Some(_) => None,
        None => std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len()),
    };
    let progress = Progress::new(&format!("reading {label}"), total);
    let known = |d: &Digest, size: u64| Ok(registry.holds(d)? == Some(size));
    let mut files = match pipe {
        Some(file) => entries::read_open(path, file, registry, &known, &progress)?,
        None => entries::read(path, registry, &known, &progress)?,
    };
    progress.finish();
    let holds = |d: &Digest| registry.holds(d);
    let plan = if files.has("manifest.json") {
        docker::plan(&mut files, registry)?
    } else if files.has("index.json") {
        oci::plan(&files, registry, &holds)?
    } else {
        return Err(Error::Bundle(
            "neither index.json (an OCI image layout) nor manifest.json (a docker archive): \
             not an image bundle"
                .into(),
        ));
    };
    let assigned = naming::assign(&plan.images, name).map_err(Error::Bundle)?;
    let images = {
        let mut roots: Vec<&Digest> = assigned.iter().map(|a| &a.root).collect();
        roots.sort();
        roots.dedup();
        roots.len()
    };
    let batch = batch(&plan, &assigned, &mut files, registry)?;
    let registered = registry.register(batch)?;
    Ok(Report {
        label: label.to_owned(),
        format: plan.format,
        container: files.container,
        images,
        registered,
        warnings: plan.warnings,
    })
}

/// Turns the plan into the registration batch: every blob once, staged if the bundle brought
/// it, else expected here (a delta bundle); refuses with the list of what is in neither.
fn batch(
    plan: &Plan,
    assigned: &[Assigned],
    files: &mut Files,
    registry: &Registry,
) -> Result<Batch> {
    let mut b = Batch::default();
    let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut missing: Vec<Digest> = Vec::new();
    // Manifests already in the batch: a set, as a bundle may hold a hundred thousand (a scan
    // of the batch per manifest made such an import quadratic).
    let mut listed: HashSet<Digest> = HashSet::new();
    let mut record = |d: &Digest, size: u64| -> Result<()> {
        match sizes.insert(d.clone(), size) {
            Some(other) if other != size => Err(Error::Bundle(format!(
                "{}: size mismatch: manifests say both {other} and {size} bytes",
                entries::blob_path(d)
            ))),
            _ => Ok(()),
        }
    };
    for a in assigned {
        let g = &plan.graphs[&a.root];
        missing.extend(g.missing.iter().map(|m| m.digest.clone()));
        for d in &g.blobs {
            record(&d.digest, d.size)?;
        }
        for n in &g.manifests {
            record(&n.digest, n.bytes.len() as u64)?;
            if listed.insert(n.digest.clone()) {
                b.manifests.push(NewImageManifest {
                    digest: n.digest.clone(),
                    size: n.bytes.len() as u64,
                    parsed: n.parsed.clone(),
                });
            }
        }
        let (blobs, manifests) = g.digests();
        b.images.push(ImageRef {
            repo: a.repo.clone(),
            tag: a.tag.clone(),
            root: a.root.clone(),
            manifests,
            blobs,
        });
    }
    for (digest, size) in sizes {
        let source = match files.take_staged(&digest) {
            Some(s) => Source::Staged(s),
            None => {
                if registry.holds(&digest)? != Some(size) {
                    missing.push(digest.clone());
                }
                Source::Local
            }
        };
        b.blobs.push(NewBlob {
            digest,
            size,
            source,
        });
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        let list: Vec<String> = missing.iter().map(Digest::to_string).collect();
        return Err(Error::Bundle(format!(
            "{} blob(s) are neither in the bundle nor in this registry: {}",
            list.len(),
            list.join(", ")
        )));
    }
    Ok(b)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.registered;
        let what = match self.container {
            Container::Directory => format!("{}, directory", self.format),
            Container::Tar => format!("{}, tar", self.format),
            Container::GzipTar => format!("{}, gzipped tar", self.format),
        };
        let blobs = r.blobs_new + r.blobs_present;
        if r.nothing_new() {
            write!(
                f,
                "{}: nothing new ({what}): {} image(s), {blobs} blob(s) ({}) were already here",
                self.label,
                self.images,
                human(r.bytes_present)
            )?;
        } else {
            write!(
                f,
                "imported {} ({what}): {} image(s), {blobs} blob(s) ({} new, {} already here), \
                 {} written",
                self.label,
                self.images,
                r.blobs_new,
                r.blobs_present,
                human(r.bytes_new)
            )?;
        }
        for w in &self.warnings {
            write!(f, "\n  warning: {w}")?;
        }
        for (name, digest, change) in &r.names {
            let change = match change {
                Change::New => "new",
                Change::Moved => "moved here",
                Change::Unchanged => "unchanged",
            };
            write!(f, "\n  {name}  {digest}  {change}")?;
        }
        Ok(())
    }
}
