//! `atoll --export`: an OCI image layout tar (every platform of each index, each tag named by
//! `org.opencontainers.image.ref.name`), or with `--format docker` a Docker archive for
//! `docker load` (one image per tag, the host's platform of an index), which is also an OCI
//! layout. `--exclude-from` leaves out the blobs another atoll already holds (a delta bundle).
//!
//! Consistency: everything to export is decided in one read transaction of the index, and every
//! blob file is opened inside it, before the first byte is written. GC deletes rows and files
//! in its own write transactions, so the snapshot sees only blobs whose files were there, and a
//! file once opened stays readable whatever GC does next: an export never fails halfway because
//! of a concurrent GC. Every blob's digest is checked again as it is streamed.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::convert::{self, CONVERTED_FROM};
use super::entries::blob_path;
use super::graph::{self, Node};
use super::job::{Format, ImageName, Output};
use super::oci::REF_NAME;
use super::progress::Progress;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Descriptor, Kind, OCI_INDEX};
use crate::reference::{RepoName, Tag};
use crate::registry::{Registry, View};
use crate::store::Opened;
use crate::units::human_bytes as human;

/// What the export holds, decided in one read transaction.
struct Snapshot {
    /// Each name, the manifest it points at in the bundle, and for an OCI conversion the
    /// original it was made from (see convert.rs).
    refs: Vec<(String, Descriptor, Option<Digest>)>,
    manifests: BTreeMap<Digest, Vec<u8>>,
    /// Opened blob files, each once, in the order first met.
    blobs: Vec<(Digest, u64, Opened)>,
    excluded: Vec<(Digest, u64)>,
    /// For `--format docker`: config, RepoTags and layers of each image.
    docker: Vec<(Digest, Vec<String>, Vec<Digest>)>,
}

/// What an export wrote.
pub struct Report {
    pub output: String,
    pub images: usize,
    pub names: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub excluded: usize,
    pub excluded_bytes: u64,
}

pub fn export(
    registry: &Registry,
    images: &[ImageName],
    format: Format,
    exclude: &HashSet<Digest>,
    output: &Output,
) -> Result<Report> {
    let snap = registry.view(|v| snapshot(v, images, format, exclude))?;
    let label = match output {
        Output::Stdout => "standard output".into(),
        Output::File(p) => p.display().to_string(),
    };
    let report = report(&snap, label);
    let progress = Progress::new(&format!("writing {}", report.output), Some(report.bytes));
    match output {
        Output::Stdout => {
            let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let mut out = write_tar(out, snap, format, &progress)?;
            out.flush().ctx(|| "writing to standard output".into())?;
        }
        Output::File(path) => write_file(path, snap, format, &progress)?,
    }
    progress.finish();
    Ok(report)
}

/// [`export`] into `out` (a pipe to an import in this process: `copy.rs`), as an OCI layout.
pub fn export_to(
    registry: &Registry,
    images: &[ImageName],
    exclude: &HashSet<Digest>,
    out: impl Write,
    label: &str,
) -> Result<Report> {
    let snap = registry.view(|v| snapshot(v, images, Format::Oci, exclude))?;
    let report = report(&snap, label.to_owned());
    let mut out = write_tar(
        BufWriter::with_capacity(1 << 20, out),
        snap,
        Format::Oci,
        &Progress::quiet(),
    )?;
    out.flush().ctx(|| format!("writing to {label}"))?;
    Ok(report)
}

fn report(snap: &Snapshot, output: String) -> Report {
    Report {
        output,
        images: snap
            .refs
            .iter()
            .filter(|r| r.2.is_none())
            .map(|r| &r.1.digest)
            .collect::<HashSet<_>>()
            .len(),
        names: snap.refs.iter().filter(|r| r.2.is_none()).count(),
        blobs: snap.blobs.len() + snap.manifests.len(),
        bytes: snap.blobs.iter().map(|b| b.1).sum::<u64>()
            + snap.manifests.values().map(|m| m.len() as u64).sum::<u64>(),
        excluded: snap.excluded.len(),
        excluded_bytes: snap.excluded.iter().map(|e| e.1).sum(),
    }
}

fn snapshot(
    v: &View,
    images: &[ImageName],
    format: Format,
    exclude: &HashSet<Digest>,
) -> Result<Snapshot> {
    let mut snap = Snapshot {
        refs: Vec::new(),
        manifests: BTreeMap::new(),
        blobs: Vec::new(),
        excluded: Vec::new(),
        docker: Vec::new(),
    };
    let mut wanted: Vec<(RepoName, Descriptor)> = Vec::new();
    for (repo, tag, root) in roots(v, images)? {
        let name = format!("{repo}:{tag}");
        let g = graph::walk(&root, &mut |d| v.manifest(&repo, &d.digest))?;
        if let Some(m) = g.missing.first() {
            return Err(Error::Corrupt(format!(
                "{name}: manifest {} is listed but not stored",
                m.digest
            )));
        }
        let (top, nodes) = match format {
            Format::Oci => (root.clone(), g.manifests.iter().collect::<Vec<_>>()),
            Format::Docker => docker_image(&name, &g.manifests, &root)?,
        };
        for n in nodes {
            snap.manifests.insert(n.digest.clone(), n.bytes.clone());
            if format == Format::Docker {
                let layers = n.parsed.layers.iter().map(|l| l.digest.clone()).collect();
                let config = n.parsed.config.as_ref().expect("an image has a config");
                add_docker(&mut snap.docker, &config.digest, &name, layers);
            }
            for b in n.parsed.config.iter().chain(n.parsed.layers.iter()) {
                if !b.external && !wanted.iter().any(|(_, w)| w.digest == b.digest) {
                    wanted.push((repo.clone(), b.clone()));
                }
            }
        }
        if format == Format::Oci {
            if let Some((conv, bytes)) = convert::to_oci(&g.manifests, &root.digest) {
                snap.manifests.extend(bytes);
                snap.refs
                    .push((name.clone(), conv, Some(root.digest.clone())));
            }
        }
        snap.refs.push((name, top, None));
    }
    for (repo, d) in wanted {
        if exclude.contains(&d.digest) {
            snap.excluded.push((d.digest, d.size));
            continue;
        }
        let (file, size) = v.open(&repo, &d.digest)?.ok_or_else(|| {
            Error::Corrupt(format!(
                "{repo}: {} is named by a manifest but not linked",
                d.digest
            ))
        })?;
        if size != d.size {
            return Err(Error::Corrupt(format!(
                "{}: the index says {size} bytes, the manifest {}",
                d.digest, d.size
            )));
        }
        snap.blobs.push((d.digest, size, file));
    }
    Ok(snap)
}

/// Every (repository, tag, root descriptor) the arguments name: NAME means every tag.
fn roots(v: &View, images: &[ImageName]) -> Result<Vec<(RepoName, Tag, Descriptor)>> {
    let mut out: Vec<(RepoName, Tag, Descriptor)> = Vec::new();
    for img in images {
        let tags: Vec<Tag> = match &img.tag {
            Some(t) => vec![t.clone()],
            None => v
                .tags(&img.repo)?
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
        };
        if tags.is_empty() {
            return Err(Error::ManifestUnknown(format!("{} has no tags", img.repo)));
        }
        for tag in tags {
            if out.iter().any(|(r, t, _)| r == &img.repo && t == &tag) {
                continue;
            }
            let row = v.resolve(&img.repo, &tag)?;
            let digest = row.digest.parse().map_err(|_| {
                Error::Corrupt(format!("index holds a bad digest {:?}", row.digest))
            })?;
            let d = Descriptor {
                media_type: row.media_type,
                digest,
                size: row.size,
                platform: None,
                external: false,
            };
            out.push((img.repo.clone(), tag, d));
        }
    }
    Ok(out)
}

/// The image a Docker archive gets for a root: the root itself, or the child of an index for
/// this machine's platform.
fn docker_image<'a>(
    name: &str,
    nodes: &'a [Node],
    root: &Descriptor,
) -> Result<(Descriptor, Vec<&'a Node>)> {
    let find = |d: &Digest| nodes.iter().find(|n| &n.digest == d);
    let top = find(&root.digest).expect("the walk holds its root");
    if top.parsed.kind == Kind::Image {
        return Ok((root.clone(), vec![top]));
    }
    let want = format!("linux/{}", host_arch());
    let child = top
        .parsed
        .manifests
        .iter()
        .find(|c| {
            c.platform
                .as_deref()
                .is_some_and(|p| p == want || p.starts_with(&format!("{want}/")))
        })
        .ok_or_else(|| {
            Error::Bundle(format!(
                "{name} is an index with no {want} image, and a Docker archive holds one \
                 platform: export it with --format oci"
            ))
        })?;
    match find(&child.digest) {
        Some(n) if n.parsed.kind == Kind::Image => Ok((child.clone(), vec![n])),
        _ => Err(Error::Bundle(format!(
            "{name}: the {want} entry is not an image manifest"
        ))),
    }
}

fn add_docker(
    entries: &mut Vec<(Digest, Vec<String>, Vec<Digest>)>,
    config: &Digest,
    name: &str,
    layers: Vec<Digest>,
) {
    match entries
        .iter_mut()
        .find(|(c, _, l)| c == config && l == &layers)
    {
        Some((_, tags, _)) => tags.push(name.to_owned()),
        None => entries.push((config.clone(), vec![name.to_owned()], layers)),
    }
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Writes to a temporary file beside `path`, renamed over it only when complete.
fn write_file(path: &Path, snap: Snapshot, format: Format, progress: &Progress) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let temp = TempFile(dir.join(format!(".{name}.{}.part", crate::ids::new_id())));
    let file = File::create(&temp.0).at("creating", &temp.0)?;
    let out = write_tar(
        BufWriter::with_capacity(1 << 20, file),
        snap,
        format,
        progress,
    )?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io_at("writing", &temp.0, e.into_error()))?;
    file.sync_all().at("syncing", &temp.0)?;
    fs::rename(&temp.0, path).at("renaming the bundle to", path)?;
    std::mem::forget(temp);
    Ok(())
}

/// Deletes a half-written bundle unless forgotten.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn write_tar<W: Write>(out: W, snap: Snapshot, format: Format, progress: &Progress) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    let w = |e: io::Error| Error::io("writing the bundle", e);
    let mut dirs: Vec<String> = vec!["blobs/".into()];
    for d in snap.manifests.keys().chain(snap.blobs.iter().map(|b| &b.0)) {
        let dir = format!("blobs/{}/", d.algorithm().name());
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for d in &dirs {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        tar.append_data(&mut h, d, io::empty()).map_err(w)?;
    }
    file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(w)?;
    for (d, bytes) in &snap.manifests {
        file(&mut tar, &blob_path(d), bytes).map_err(w)?;
        progress.add(bytes.len() as u64);
    }
    for (d, size, f) in snap.blobs {
        let mut h = header(size, 0o644, tar::EntryType::Regular);
        let reader = Verified {
            inner: f.reader()?,
            left: size,
            hasher: d.algorithm().hasher(),
            want: d.clone(),
            progress,
        };
        tar.append_data(&mut h, blob_path(&d), reader).map_err(w)?;
    }
    let index = index_json(&snap.refs);
    file(&mut tar, "index.json", &index).map_err(w)?;
    if format == Format::Docker {
        let list: Vec<Value> = snap
            .docker
            .iter()
            .map(|(config, tags, layers)| {
                json!({
                    "Config": blob_path(config),
                    "RepoTags": tags,
                    "Layers": layers.iter().map(blob_path).collect::<Vec<_>>(),
                })
            })
            .collect();
        let body = serde_json::to_vec(&list).expect("serialising to memory");
        file(&mut tar, "manifest.json", &body).map_err(w)?;
    }
    tar.into_inner().map_err(w)
}

/// index.json: one entry per name.
fn index_json(refs: &[(String, Descriptor, Option<Digest>)]) -> Vec<u8> {
    let manifests: Vec<Value> = refs
        .iter()
        .map(|(name, d, from)| {
            let mut a = json!({ REF_NAME: name });
            if let Some(from) = from {
                a[CONVERTED_FROM] = Value::from(from.to_string());
            }
            json!({
                "mediaType": d.media_type,
                "digest": d.digest.to_string(),
                "size": d.size,
                "annotations": a,
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("serialising to memory")
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h
}

fn file<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
}

/// Streams a blob file, failing if it is shorter than its size or its bytes are not its digest
/// (a damaged store must not produce a bundle that only fails on the far side).
struct Verified<'a> {
    inner: Box<dyn Read + Send>,
    left: u64,
    hasher: Hasher,
    want: Digest,
    progress: &'a Progress,
}

impl Read for Verified<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let cap = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob {} is shorter on disk than the index says", self.want),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        self.progress.add(n as u64);
        if self.left == 0 {
            let got = std::mem::replace(&mut self.hasher, self.want.algorithm().hasher()).finish();
            if got != self.want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} on disk has digest {got}: the store is damaged",
                        self.want
                    ),
                ));
            }
        }
        Ok(n)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exported {} image(s) under {} name(s) to {}: {} blob(s), {}",
            self.images,
            self.names,
            self.output,
            self.blobs,
            human(self.bytes)
        )?;
        if self.excluded > 0 {
            write!(
                f,
                "; left out {} blob(s) ({}) the target already has",
                self.excluded,
                human(self.excluded_bytes)
            )?;
        }
        Ok(())
    }
}
