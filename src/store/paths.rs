//! Where everything lives in the data directory. The one place that turns digests and ids into
//! paths; every path it builds stays inside the data directory, because its inputs (a validated
//! [`Digest`], a hex upload id) cannot contain `/` or `..`. Pure: no I/O.
//!
//! ```text
//! <data-dir>/
//! ├── index.db              SQLite index (+ index.db-wal, index.db-shm)
//! ├── blobs/                complete blobs only, named by digest
//! │   ├── sha256/
//! │   │   └── 4f/           first two hex characters, so no directory grows past ~1/256th
//! │   │       └── 4f3a...   (the full hex digest)
//! │   └── sha512/...
//! ├── uploads/<id>          bytes of an upload in progress
//! ├── tmp/                  files being written before their atomic rename into blobs/
//! └── tls/                  generated CA and server certificate (--tls-auto)
//! ```

use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index_db(&self) -> PathBuf {
        self.root.join("index.db")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.blobs_dir().join(algorithm.name())
    }

    /// The fan-out directory a blob's file lives in.
    pub fn blob_dir(&self, digest: &Digest) -> PathBuf {
        self.algorithm_dir(digest.algorithm())
            .join(&digest.hex()[..2])
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blob_dir(digest).join(digest.hex())
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `id` must be an id atoll generated (hex); routing refuses anything else.
    pub fn upload(&self, id: &str) -> PathBuf {
        debug_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        self.uploads_dir().join(id)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
}

/// Reads a digest back from a file name under `blobs/<algorithm>/<xx>/`.
pub fn digest_from_blob_path(algorithm: Algorithm, file_name: &str) -> Option<Digest> {
    Digest::from_hex(algorithm, file_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_fan_out_by_two_hex_characters() {
        let l = Layout::new("/data");
        let d = Digest::sha256_of(b"");
        assert_eq!(
            l.blob(&d),
            PathBuf::from(format!("/data/blobs/sha256/e3/{}", d.hex()))
        );
        assert_eq!(digest_from_blob_path(Algorithm::Sha256, d.hex()), Some(d));
    }

    #[test]
    fn stray_file_names_are_not_digests() {
        assert_eq!(digest_from_blob_path(Algorithm::Sha256, "tmp123"), None);
        assert_eq!(digest_from_blob_path(Algorithm::Sha256, "../../x"), None);
    }
}
