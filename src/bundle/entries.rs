//! Reading a bundle's files once, safely: a tar (gzip-compressed or not) as a stream, or a
//! directory. Every regular file is hashed as it is read; those that may become blobs are
//! copied into the store's `tmp/` (fsynced, deleted when dropped unless published); small
//! metadata (`index.json`, `manifest.json`, `oci-layout`) is kept in memory. Staged bytes go
//! through the store's ingest (hashed as written, checked when finished), which the registry
//! hands out.
//!
//! Nothing is ever read through a path that could leave the bundle: an entry named with `..`
//! or an absolute path, a link whose target leaves the bundle, and any entry that is neither a
//! regular file, a directory nor a link is refused before its data is read. A link inside the
//! bundle (skopeo's `docker-archive:` writes `<id>/layer.tar -> ../<digest>.tar`) is never
//! followed on disk: it is resolved among the entries already read, so it can only name bytes
//! that were themselves read and hashed as a regular file of the bundle. No file is opened in a
//! way that could wait (a FIFO waits for a writer): see `stream::open_no_wait`.
//!
//! What is staged, and how much. Only what can become part of an image is copied into `tmp/`:
//! files under `blobs/`, `.tar` layers, and other files no larger than a config may be
//! ([`MAX_METADATA`]; docker archives name their configs `<id>.json`). Anything else is read and
//! hashed, never written. Before an entry is staged the disk must have room for the size its
//! header announces (the check uploads make). And a gzip-compressed bundle may not inflate past
//! [`MAX_INFLATION`] times its own size: the entry whose header crosses that line is refused
//! before its bytes are read, so a decompression bomb costs neither disk nor time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::gzip;
use super::progress::{Counting, Progress};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::registry::Registry;

pub use super::files::{blob_path, Body, Container, Entry, Files};
use super::files::{mismatch, refuse};
use super::stream::{
    check_length, hash_through, open_no_wait, pump, special_kind, with_path, StagedWriter, CHUNK,
};

/// Metadata files are held in memory; larger ones are refused.
pub const MAX_METADATA: u64 = 8 * 1024 * 1024;
/// How many times its own size a gzip-compressed bundle may inflate to. Deflate's own limit is
/// about 1032 (all zeros); image bundles inflate 1 to 5 times (layers are compressed already,
/// or are tars of binaries, which gzip to 40-50%), so only a crafted bundle comes near this.
pub const MAX_INFLATION: u64 = 100;
/// Below this many inflated bytes, a bundle's inflation is never questioned.
pub const INFLATION_FLOOR: u64 = 64 * 1024 * 1024;
const MAX_DIR_DEPTH: usize = 16;
const START: &str = "the start of the archive";

/// What a path is, by its name alone. Pure.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Metadata,
    /// `blobs/<algorithm>/<encoded>`: the name is the digest the content must have.
    Blob(Digest),
    /// A docker archive's layer tar: compressed on the way in.
    Layer,
    /// The legacy `<id>/json` and `<id>/VERSION` of `docker save`: not needed, not read.
    Skip,
    Other,
}

fn classify(path: &str) -> Class {
    match path {
        "index.json" | "oci-layout" | "manifest.json" => return Class::Metadata,
        "repositories" => return Class::Skip,
        _ => {}
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["blobs", alg, enc] => match format!("{alg}:{enc}").parse::<Digest>() {
            Ok(d) => Class::Blob(d),
            Err(_) => Class::Other,
        },
        [_, "json" | "VERSION"] => Class::Skip,
        _ if path.ends_with(".tar") => Class::Layer,
        _ => Class::Other,
    }
}

/// Normalises an entry's path, or says why it is refused. Pure.
pub fn safe_path(raw: &str) -> std::result::Result<String, String> {
    if raw.starts_with('/') {
        return Err("an absolute path: a bundle's paths must stay inside it".into());
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("a path with '..': a bundle's paths must stay inside it".into()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Where a link inside the bundle points, as a bundle path, or why it is refused. A symbolic
/// link's target is relative to its directory, a hard link's to the archive's root. Pure.
pub fn resolve_link(path: &str, target: &str, hard: bool) -> std::result::Result<String, String> {
    let outside = || format!("a link to {target:?}, outside the bundle");
    if target.starts_with('/') {
        return Err(outside());
    }
    let mut parts: Vec<&str> = if hard {
        Vec::new()
    } else {
        let mut p: Vec<&str> = path.split('/').collect();
        p.pop();
        p
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(outside)?;
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(outside());
    }
    Ok(parts.join("/"))
}

/// Reads the bundle at `path`, staging files through `registry`. `known` says whether the
/// registry already holds a digest with this size (such blobs are verified but not copied).
pub fn read(
    path: &Path,
    registry: &Registry,
    known: &dyn Fn(&Digest, u64) -> Result<bool>,
    progress: &Progress,
) -> Result<Files> {
    let meta = fs::metadata(path).at("reading", path)?;
    if meta.is_dir() {
        read_from(path, None, registry, known, progress)
    } else {
        let opened = open_no_wait(path)?;
        read_from(path, Some(opened), registry, known, progress)
    }
}

/// [`read`] of a bundle already open (a pipe from an export in this process: `copy.rs`);
/// `path` only names it in messages.
pub fn read_open(
    path: &Path,
    file: std::fs::File,
    registry: &Registry,
    known: &dyn Fn(&Digest, u64) -> Result<bool>,
    progress: &Progress,
) -> Result<Files> {
    let meta = file.metadata().at("reading", path)?;
    read_from(path, Some((file, meta)), registry, known, progress)
}

/// Reads the directory at `path`, or `opened`, the file there.
fn read_from(
    path: &Path,
    opened: Option<(std::fs::File, fs::Metadata)>,
    registry: &Registry,
    known: &dyn Fn(&Digest, u64) -> Result<bool>,
    progress: &Progress,
) -> Result<Files> {
    let mut r = Reader {
        registry,
        known,
        progress,
        count: false,
        compressed: None,
        inflated: 0,
        seen: HashSet::new(),
        files: Files {
            container: Container::Tar,
            entries: BTreeMap::new(),
            links: BTreeMap::new(),
            staged: HashMap::new(),
        },
    };
    if let Some((file, meta)) = opened {
        let kind = meta.file_type();
        if !kind.is_file() && !kind.is_fifo() {
            let what = special_kind(kind).unwrap_or("a special file");
            return Err(Error::Bundle(format!(
                "{what}, not a bundle (a file, a directory or a pipe)"
            )));
        }
        let mut buffered = BufReader::with_capacity(
            CHUNK,
            Counting {
                inner: file,
                progress,
            },
        );
        let head = buffered.fill_buf().at("reading", path)?;
        if gzip::is_gzip(head) {
            r.files.container = Container::GzipTar;
            // A pipe's length is unknown: only the free-space check bounds what it brings.
            r.compressed = meta.is_file().then_some(meta.len());
            r.tar(flate2::bufread::GzDecoder::new(buffered))?;
        } else {
            r.tar(buffered)?;
        }
    } else {
        r.files.container = Container::Directory;
        r.count = true;
        r.walk(path, "", 0)?;
    }
    Ok(r.files)
}

struct Reader<'a> {
    registry: &'a Registry,
    known: &'a dyn Fn(&Digest, u64) -> Result<bool>,
    progress: &'a Progress,
    /// Count bytes here (directories); a tar is counted as its file is read.
    count: bool,
    /// The size of a gzip-compressed bundle file, which bounds how far it may inflate.
    compressed: Option<u64>,
    /// The sizes announced by the entries so far.
    inflated: u64,
    seen: HashSet<String>,
    files: Files,
}

impl Reader<'_> {
    fn tar<R: Read>(&mut self, input: R) -> Result<()> {
        let mut archive = tar::Archive::new(input);
        let mut last = String::from(START);
        let unreadable = |last: &str, e: io::Error| {
            let cut = e.kind() == io::ErrorKind::UnexpectedEof
                || e.to_string().contains("failed to read entire block");
            Error::Bundle(if cut {
                format!("after {last}: truncated: the bundle ends inside the next entry's header")
            } else if last == START {
                "not a tar archive, a gzipped tar or an OCI layout directory".to_owned()
            } else {
                // tar's message may quote the bad header's bytes: keep one printable line.
                let why: String = e
                    .to_string()
                    .chars()
                    .take_while(|c| !c.is_control())
                    .take(100)
                    .collect();
                format!("after {last}: corrupt: {why}")
            })
        };
        let entries = archive.entries().map_err(|e| unreadable(&last, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| unreadable(&last, e))?;
            let raw = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| refuse(&last, "the next entry's path is not UTF-8"))?;
            let path = safe_path(&raw).map_err(|why| refuse(&raw, why))?;
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() {
                continue;
            }
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                self.add_link(&path, &target, kind.is_hard_link())?;
            } else if kind.is_file() || kind.is_contiguous() {
                let size = entry.size();
                self.add_file(&path, size, &mut entry)?;
            } else {
                let what = match kind {
                    tar::EntryType::Char => "a character device".to_owned(),
                    tar::EntryType::Block => "a block device".to_owned(),
                    tar::EntryType::Fifo => "a FIFO".to_owned(),
                    tar::EntryType::GNUSparse => "a sparse file".to_owned(),
                    other => format!("an entry of type {:?}", other.as_byte() as char),
                };
                return Err(refuse(
                    &path,
                    format!("{what}; a bundle holds only regular files, directories and links"),
                ));
            }
            last = path;
        }
        // Read to the end, so a gzip stream's checksum and length are verified too.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| {
            Error::Bundle(format!(
                "after {last}: the compressed stream is truncated or corrupt: {e}"
            ))
        })?;
        Ok(())
    }

    fn walk(&mut self, dir: &Path, rel: &str, depth: usize) -> Result<()> {
        if depth > MAX_DIR_DEPTH {
            return Err(refuse(rel, "directories nested too deep"));
        }
        let mut items: Vec<fs::DirEntry> = fs::read_dir(dir)
            .at("listing", dir)?
            .collect::<io::Result<_>>()
            .at("listing", dir)?;
        items.sort_by_key(|e| e.file_name());
        for item in items {
            let name = item.file_name().into_string().map_err(|n| {
                refuse(
                    &format!("{rel}/{}", n.to_string_lossy()),
                    "a path that is not UTF-8",
                )
            })?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = item.path();
            // DirEntry's type and metadata describe the entry itself, never a link's target.
            let kind = item.file_type().at("reading", &full)?;
            if kind.is_dir() {
                self.walk(&full, &path, depth + 1)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&full).at("reading", &full)?;
                self.add_link(&path, &target.to_string_lossy(), false)?;
            } else if kind.is_file() {
                let meta = item.metadata().at("reading", &full)?;
                let (mut file, opened) = open_no_wait(&full)?;
                if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
                    return Err(refuse(&path, "was replaced while the bundle was read"));
                }
                self.add_file(&path, meta.len(), &mut file)?;
            } else {
                return Err(refuse(
                    &path,
                    "a special file; a bundle holds only regular files, directories and links",
                ));
            }
        }
        Ok(())
    }

    fn claim(&mut self, path: &str) -> Result<()> {
        if path.is_empty() {
            return Err(refuse("\"\"", "an entry with an empty path"));
        }
        if !self.seen.insert(path.to_owned()) {
            return Err(refuse(path, "appears twice in the bundle"));
        }
        Ok(())
    }

    fn add_link(&mut self, path: &str, target: &str, hard: bool) -> Result<()> {
        self.claim(path)?;
        let to = resolve_link(path, target, hard).map_err(|why| refuse(path, why))?;
        self.files.links.insert(path.to_owned(), to);
        Ok(())
    }

    /// Refuses the entry whose announced size takes a gzip-compressed bundle past
    /// [`MAX_INFLATION`] times its size, before a byte of it is read.
    fn check_inflation(&mut self, path: &str, size: u64) -> Result<()> {
        self.inflated = self.inflated.saturating_add(size);
        let Some(compressed) = self.compressed else {
            return Ok(());
        };
        if self.inflated
            <= compressed
                .saturating_mul(MAX_INFLATION)
                .max(INFLATION_FLOOR)
        {
            return Ok(());
        }
        Err(refuse(
            path,
            format!(
                "{size} bytes once decompressed, which takes the bundle past {MAX_INFLATION} \
                 times its compressed size of {compressed} bytes: refused as a decompression \
                 bomb (if it is genuine, gunzip it and import the .tar)"
            ),
        ))
    }

    fn add_file(&mut self, path: &str, size: u64, r: &mut dyn Read) -> Result<()> {
        self.claim(path)?;
        self.check_inflation(path, size)?;
        let mut counted;
        let r: &mut dyn Read = if self.count {
            counted = Counting {
                inner: r,
                progress: self.progress,
            };
            &mut counted
        } else {
            r
        };
        let entry = match classify(path) {
            Class::Skip => {
                io::copy(&mut r.take(size), &mut io::sink()).ctx(|| format!("reading {path}"))?;
                return Ok(());
            }
            Class::Metadata => self.metadata(path, size, r)?,
            Class::Blob(want) if (self.known)(&want, size)? => {
                self.verify_only(path, size, r, want)?
            }
            Class::Blob(want) => self.stage(path, size, r, Stage::Blob(&want))?,
            Class::Layer => self.stage(path, size, r, Stage::Layer)?,
            // Larger than any config atoll reads: no image can use it.
            Class::Other if size > MAX_METADATA => {
                let (digest, gzip) = hash_through(path, size, r, Algorithm::Sha256)?;
                Entry {
                    digest,
                    size,
                    gzip,
                    body: Body::Skipped,
                }
            }
            Class::Other => self.stage(path, size, r, Stage::Other)?,
        };
        self.files.entries.insert(path.to_owned(), entry);
        Ok(())
    }

    fn metadata(&mut self, path: &str, size: u64, r: &mut dyn Read) -> Result<Entry> {
        if size > MAX_METADATA {
            return Err(refuse(
                path,
                format!("{size} bytes; atoll reads at most {MAX_METADATA} of metadata"),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        r.take(size)
            .read_to_end(&mut bytes)
            .ctx(|| format!("reading {path}"))?;
        check_length(path, bytes.len() as u64, size)?;
        Ok(Entry {
            digest: Digest::sha256_of(&bytes),
            size,
            gzip: false,
            body: Body::Memory(bytes),
        })
    }

    fn verify_only(
        &mut self,
        path: &str,
        size: u64,
        r: &mut dyn Read,
        want: Digest,
    ) -> Result<Entry> {
        let (got, gzip) = hash_through(path, size, r, want.algorithm())?;
        if got != want {
            return Err(mismatch(path, &got, &want));
        }
        Ok(Entry {
            digest: got,
            size,
            gzip,
            body: Body::Known,
        })
    }

    /// Copies an entry into `tmp/` while hashing it; a docker layer tar that is not
    /// compressed already is gzip-compressed on the way.
    fn stage(&mut self, path: &str, size: u64, r: &mut dyn Read, how: Stage) -> Result<Entry> {
        let algorithm = match how {
            Stage::Blob(want) => want.algorithm(),
            Stage::Layer | Stage::Other => Algorithm::Sha256,
        };
        let mut ingest = self.registry.ingest_for(size, path, algorithm)?;
        if !matches!(how, Stage::Layer) {
            ingest.limit(size); // a layer's compressed copy may come out a little longer
        }
        let tmp = ingest.path().to_owned();
        let mut writer = StagedWriter::Undecided(Some(ingest), matches!(how, Stage::Layer));
        let (n, head) = pump(path, size, r, &mut |chunk| writer.write(chunk))
            .map_err(|e| with_path(e, &tmp))?;
        check_length(path, n, size)?;
        // Staged under the digest of what the file holds: the compressed bytes, if compressed.
        let (digest, done, body) = match writer {
            StagedWriter::Gzip(raw, enc) => {
                let done = enc
                    .finish()
                    .ctx(|| format!("compressing {path}"))?
                    .finish()?;
                let body = Body::Compressed {
                    digest: done.digest.clone(),
                    size: done.len,
                };
                (raw.finish(), done, body)
            }
            StagedWriter::Undecided(Some(ingest), _) | StagedWriter::Plain(ingest) => {
                let done = match how {
                    Stage::Blob(want) => ingest.finish_as(want, |got| mismatch(path, got, want))?,
                    Stage::Layer | Stage::Other => ingest.finish()?,
                };
                (done.digest.clone(), done, Body::Staged)
            }
            StagedWriter::Undecided(None, _) => unreachable!("an undecided writer has its ingest"),
        };
        self.files.staged.entry(done.digest).or_insert(done.staged);
        Ok(Entry {
            digest,
            size,
            gzip: gzip::is_gzip(&head),
            body,
        })
    }
}

/// What an entry is staged as.
#[derive(Clone, Copy)]
enum Stage<'d> {
    /// A `blobs/` file: it must hash to the digest its name says.
    Blob(&'d Digest),
    /// A docker layer tar: compressed unless it is already.
    Layer,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_bundle_are_refused() {
        assert_eq!(safe_path("./blobs//sha256/ab").unwrap(), "blobs/sha256/ab");
        assert!(safe_path("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(safe_path("blobs/../../x").unwrap_err().contains(".."));
        assert!(safe_path("../x").is_err());
        assert_eq!(safe_path("./").unwrap(), "");
    }

    #[test]
    fn links_resolve_inside_the_bundle_only() {
        assert_eq!(
            resolve_link("abc/layer.tar", "../0123.tar", false).unwrap(),
            "0123.tar"
        );
        assert_eq!(
            resolve_link("a/b/c", "../../blobs/x", true).unwrap_err(),
            "a link to \"../../blobs/x\", outside the bundle"
        );
        assert_eq!(resolve_link("a/b", "blobs/x", true).unwrap(), "blobs/x");
        assert!(resolve_link("a/layer.tar", "../../etc/passwd", false).is_err());
        assert!(resolve_link("layer.tar", "/etc/passwd", false).is_err());
    }

    #[test]
    fn names_say_what_a_file_is() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(classify(&blob_path(&d)), Class::Blob(d));
        assert_eq!(classify("blobs/sha256/nothex"), Class::Other);
        assert_eq!(classify("index.json"), Class::Metadata);
        assert_eq!(classify("abc/json"), Class::Skip);
        assert_eq!(classify("abc/layer.tar"), Class::Layer);
        assert_eq!(classify("0123.tar"), Class::Layer);
        assert_eq!(classify("0123.json"), Class::Other);
    }
}
