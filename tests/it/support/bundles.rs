//! Bundles for tests: tars built entry by entry (hostile ones included: `..`, absolute paths,
//! links out, devices), docker archives in the three shapes docker and skopeo write, gzip, and
//! running the `atoll` command-line modes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use super::content::{sha256, Image};
use super::files_under;

/// `atoll --data-dir DIR ARGS...`, with a clean environment.
pub fn atoll_command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atoll"));
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    super::engines(&mut c, dir);
    c
}

/// Runs `atoll --data-dir DIR ARGS...` and returns what happened.
pub fn atoll(dir: &Path, args: &[&str]) -> Output {
    atoll_command(dir, args).output().expect("running atoll")
}

/// Runs atoll and asserts success; returns stdout.
#[track_caller]
pub fn atoll_ok(dir: &Path, args: &[&str]) -> String {
    let out = atoll(dir, args);
    assert!(
        out.status.success(),
        "atoll {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs atoll expecting failure with exit code 1 and one line on stderr; returns that line.
#[track_caller]
pub fn atoll_fails(dir: &Path, args: &[&str]) -> String {
    let out = atoll(dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "atoll {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err.trim_end().to_owned()
}

/// The files a failed import must not have left: everything under tmp/, uploads/ and blobs/.
pub fn store_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.starts_with("tmp/") || f.starts_with("uploads/") || f.starts_with("blobs/"))
        .collect()
}

/// A tar built entry by entry.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h
}

impl Tar {
    pub fn file(mut self, path: &str, bytes: &[u8]) -> Tar {
        let mut h = header(tar::EntryType::Regular, bytes.len() as u64);
        self.0.append_data(&mut h, path, bytes).unwrap();
        self
    }

    /// A regular file whose name is written as is, `..` and `/` included.
    pub fn raw_file(mut self, path: &str, bytes: &[u8]) -> Tar {
        let mut h = header(tar::EntryType::Regular, bytes.len() as u64);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.0.append(&h, bytes).unwrap();
        self
    }

    pub fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Tar {
        let mut h = header(kind, 0);
        h.set_link_name(target).unwrap();
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn special(mut self, kind: tar::EntryType, path: &str) -> Tar {
        let mut h = header(kind, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    /// An entry whose header announces `size` bytes, of which only `bytes` follow.
    pub fn announced(mut self, path: &str, size: u64, bytes: &[u8]) -> Tar {
        let mut h = header(tar::EntryType::Regular, size);
        h.set_path(path).unwrap();
        h.set_cksum();
        self.0.get_mut().extend_from_slice(h.as_bytes());
        self.0.get_mut().extend_from_slice(bytes);
        self
    }

    /// Every file of an OCI layout directory.
    pub fn layout(mut self, dir: &Path) -> Tar {
        for f in files_under(dir) {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            self = self.file(&f, &bytes);
        }
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A gzipped tar that opens with the entry `path`, `size` bytes of zeros (whole MiB), and goes
/// on with `rest` (a whole tar): a decompression bomb, valid to the last checksum, built in
/// milliseconds whatever its size. 1 MiB of zeros is deflated once more after the first MiB,
/// ending with a sync flush, and that piece is repeated: it starts a block on a byte boundary
/// and its back-references reach only zeros, so it inflates to 1 MiB of zeros wherever zeros
/// precede it.
pub fn gzip_bomb(path: &str, size: u64, rest: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    const MIB: u64 = 1 << 20;
    assert!(size >= 2 * MIB && size.is_multiple_of(MIB));
    let mut h = header(tar::EntryType::Regular, size);
    h.set_path(path).unwrap();
    h.set_cksum();
    let zeros = vec![0u8; MIB as usize];
    let mut c = Compress::new(Compression::best(), false);
    let mut first = h.as_bytes().to_vec();
    first.extend_from_slice(&zeros);
    let mut body = deflate(&mut c, &first, FlushCompress::Sync);
    let piece = deflate(&mut c, &zeros, FlushCompress::Sync);
    for _ in 1..size / MIB {
        body.extend_from_slice(&piece);
    }
    let mut fresh = Compress::new(Compression::fast(), false);
    body.extend(deflate(&mut fresh, rest, FlushCompress::Finish));
    let mut crc = Crc::new();
    crc.update(h.as_bytes());
    let mut mib = Crc::new();
    mib.update(&zeros);
    for _ in 0..size / MIB {
        crc.combine(&mib);
    }
    crc.update(rest);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(body);
    out.extend(crc.sum().to_le_bytes());
    out.extend(crc.amount().to_le_bytes());
    out
}

/// Raw deflate of all of `input`, then `flush`.
fn deflate(c: &mut flate2::Compress, mut input: &[u8], flush: flate2::FlushCompress) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        out.reserve(256 * 1024);
        let before = c.total_in();
        let status = c.compress_vec(input, &mut out, flush).unwrap();
        input = &input[(c.total_in() - before) as usize..];
        let flushed = input.is_empty() && out.len() < out.capacity();
        match flush {
            flate2::FlushCompress::Finish if status == flate2::Status::StreamEnd => return out,
            flate2::FlushCompress::Finish => {}
            _ if flushed => return out,
            _ => {}
        }
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// How a docker archive lays out its files.
#[derive(Clone, Copy, Debug)]
pub enum DockerShape {
    /// docker before 25: `<id>/layer.tar`, `<config hex>.json`.
    Legacy,
    /// skopeo `docker-archive:`: `<hex>.tar`, with `<id>/layer.tar` links to them.
    Skopeo,
    /// docker 25 and later: everything under `blobs/sha256/`, plus index.json.
    Oci,
}

/// A docker archive of `img` (its layers are taken as uncompressed tars) tagged `tags`.
pub fn docker_archive(img: &Image, tags: &[&str], shape: DockerShape) -> Vec<u8> {
    let hex = |b: &[u8]| sha256(b)["sha256:".len()..].to_owned();
    let mut t = Tar::default();
    let mut layers = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let id = format!("{:064x}", i + 1);
        let path = match shape {
            DockerShape::Legacy => {
                t = t
                    .file(&format!("{id}/VERSION"), b"1.0")
                    .file(&format!("{id}/layer.tar"), l);
                format!("{id}/layer.tar")
            }
            DockerShape::Skopeo => {
                t = t.file(&format!("{}.tar", hex(l)), l).link(
                    tar::EntryType::Symlink,
                    &format!("{id}/layer.tar"),
                    &format!("../{}.tar", hex(l)),
                );
                format!("{}.tar", hex(l))
            }
            DockerShape::Oci => {
                t = t.file(&format!("blobs/sha256/{}", hex(l)), l);
                format!("blobs/sha256/{}", hex(l))
            }
        };
        layers.push(path);
    }
    let config = match shape {
        DockerShape::Oci => format!("blobs/sha256/{}", hex(&img.config)),
        _ => format!("{}.json", hex(&img.config)),
    };
    t = t.file(&config, &img.config);
    if let DockerShape::Oci = shape {
        t = t
            .file(
                &format!("blobs/sha256/{}", hex(&img.manifest)),
                &img.manifest,
            )
            .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .file(
                "index.json",
                &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
                    "mediaType": img.media_type, "digest": img.digest(), "size": img.manifest.len(),
                    "annotations": {"io.containerd.image.name": tags.first().copied().unwrap_or("")}
                }]}))
                .unwrap(),
            );
    }
    let manifest = json!([{ "Config": config, "RepoTags": tags, "Layers": layers }]);
    t.file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .bytes()
}
