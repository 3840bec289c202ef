//! Image bundles: what arrives on a USB stick, and what must leave on one.
//!
//! Owns the bundle formats (an OCI image layout, as a directory or a tar; a Docker archive from
//! `docker save` or skopeo `docker-archive:`; either tar gzip-compressed or not, told apart by
//! magic bytes), reading them safely, and the four command-line modes: `--import`,
//! `--import-spool`, `--export` and `--inventory`. It touches the index only through the
//! registry: `Registry::register` (one transaction for a whole import) and `Registry::view`
//! (one read snapshot for a whole export).
//!
//! ```text
//! job        the modes and their flags, validated (pure)
//! entries    reading a tar or directory once: path safety, hashing, staging into tmp/
//! files      the files read: lookups, links resolved inside the bundle, staged files
//! oci        OCI image layouts: index.json, names from annotations
//! docker     docker archives: manifest.json, schema2 manifests built as a push would
//! convert    OCI forms of Docker manifests, which skopeo and podman need in a layout (pure)
//! naming     which repository and tag each image gets (pure)
//! graph      what a manifest needs: children, configs, layers (pure, loader injected)
//! gzip       magic bytes, the deterministic layer compressor
//! plan       what a bundle holds, understood: the readers' one output
//! import     one bundle, read, planned, verified, registered
//! export     OCI layout or docker archive tar from one snapshot, to a file or stdout
//! inventory  the digests held here, for delta bundles
//! spool      the drop directory the systemd path unit watches
//! progress   the progress line on a terminal
//! ```

mod convert;
mod copy;
mod docker;
mod entries;
mod export;
mod files;
mod graph;
mod gzip;
pub(crate) mod import;
mod inventory;
pub mod job;
mod naming;
mod oci;
mod plan;
mod progress;
mod spool;
mod stream;

use std::collections::HashSet;

pub use job::{Format, ImageName, Job, Output};

use crate::error::{Error, Result};
use crate::registry::{Options, Registry};

/// Runs a bundle mode against the data directory. Safe while a server runs on the same
/// directory: SQLite serialises the writers, and blobs are published inside the transaction
/// that records them, as a push does.
pub fn run(data_dir: &std::path::Path, options: Options, job: &Job) -> Result<()> {
    let reads_only = matches!(job, Job::Export { .. } | Job::Inventory { .. });
    let sqlite = matches!(options.index, crate::index::IndexConfig::Sqlite);
    if reads_only && sqlite && !data_dir.join("index.db").is_file() {
        return Err(Error::Config(format!(
            "--data-dir {}: no atoll registry there",
            data_dir.display()
        )));
    }
    if let Job::CopyFrom { dir } = job {
        let same = matches!(
            (dir.canonicalize(), data_dir.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        );
        if same {
            return Err(Error::Config(format!(
                "--copy-from {}: that is --data-dir itself; give the target's settings \
                 (--index, --blob-store) and a --data-dir of its own",
                dir.display()
            )));
        }
    }
    let registry = Registry::open(data_dir, options)?;
    match job {
        Job::Import { paths, name } => {
            for path in paths {
                let report = import::import(&registry, path, name.as_ref())?;
                println!("{report}");
            }
            Ok(())
        }
        Job::ImportSpool { dir, settle } => spool::run(&registry, dir, *settle),
        Job::Export {
            images,
            output,
            format,
            exclude_from,
        } => {
            let exclude = match exclude_from {
                Some(p) => inventory::read(p)?,
                None => HashSet::new(),
            };
            let report = export::export(&registry, images, *format, &exclude, output)?;
            eprintln!("{report}");
            Ok(())
        }
        Job::CopyFrom { dir } => {
            let report = copy::copy_from(dir, &registry)?;
            println!("{report}");
            Ok(())
        }
        Job::Inventory { output } => {
            let n = inventory::write(&registry, output)?;
            if let Output::File(p) = output {
                eprintln!(
                    "wrote the {n} digests this registry holds to {}",
                    p.display()
                );
            }
            Ok(())
        }
    }
}
