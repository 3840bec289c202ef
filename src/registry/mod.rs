//! The registry: the distribution API's operations over the blob store, the index and the
//! upload sessions, with no HTTP in sight. It is the only module that makes the store and the
//! index act together, and it keeps the invariants of `docs`: a blob is committed (renamed into
//! `blobs/`, or found in the bucket it was sent to just before) inside the same index
//! transaction that records it, so GC, which deletes blobs only inside its own transactions,
//! can never interleave with it.
//!
//! Split by resource: `blobs.rs` (read, delete, mount), `uploads.rs` (sessions),
//! `manifests.rs` (manifests, tags, referrers, catalog), `gc/` (garbage collection applied),
//! `verify.rs` (the store against the index), `import.rs` (registering a bundle in one transaction),
//! `export.rs` (a snapshot view for exports, the inventory), `browse.rs` (the web page's
//! read-only views), `cache.rs` (the pull-through cache: storing fetched content, eviction).
//! Every method blocks: the HTTP layer calls them through `smol::unblock`.
//!
//! The store is the registry's own: callers that bring bytes of their own (proxy fills, bundle
//! imports) get ingests and staged files from it here, to hand back to be published.

mod blobs;
/// The web page's read-only views (repositories, tags, cache, disk).
pub mod browse;
mod cache;
mod export;
mod gc;
mod import;
mod manifests;
mod uploads;
mod verify;

use std::io::Read;
use std::path::Path;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::index::queries::{self, RepoId};
use crate::index::{Conn, Index, IndexConfig};
use crate::reference::RepoName;
use crate::store::{BlobStore, Ingest, Staged, StoreConfig};
use crate::upload::Sessions;

pub use blobs::{BlobHit, MountOutcome};
pub use cache::{Evicted, Provenance};
pub use export::View;
pub use gc::GcLock;
pub use import::{Batch, Change, ImageRef, NewBlob, NewImageManifest, Registered, Source};
pub use manifests::{Listing, ManifestHit, Pushed};
pub use verify::{Damage, VerifyReport};

/// Behaviour the operator chooses.
#[derive(Clone, Debug)]
pub struct Options {
    /// A read refreshes a manifest's or blob link's `accessed_at` when it is older than this
    /// (seconds). Half the GC grace window at most, so a blob a client has just checked for
    /// (before pushing a manifest that names it) is never old enough for GC to take.
    pub touch_interval: i64,
    /// Blobs an eviction frees are kept while read within this many seconds, so a client
    /// midway through a pull finishes it.
    pub eviction_grace: i64,
    /// Where blobs live (`--blob-store`).
    pub blobs: StoreConfig,
    /// Where the index lives (`--index`).
    pub index: IndexConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            touch_interval: 60,
            eviction_grace: 120,
            blobs: StoreConfig::Disk,
            index: IndexConfig::Sqlite,
        }
    }
}

pub struct Registry {
    store: BlobStore,
    index: Index,
    sessions: Sessions,
    options: Options,
    clock: fn() -> i64,
}

impl Registry {
    /// Opens the data directory: creates its layout and the index if they are missing.
    pub fn open(data_dir: &Path, options: Options) -> Result<Registry> {
        let store = BlobStore::open(data_dir, &options.blobs)?;
        let index = match &options.index {
            IndexConfig::Sqlite => Index::open(&store.layout().index_db())?,
            IndexConfig::Postgres(pg) => Index::connect(pg)?,
        };
        Ok(Registry::of(store, index, options))
    }

    /// Opens a data directory that must already exist (the command-line modes: a typo in
    /// `--data-dir` must not quietly create an empty registry). `read_only` opens it without
    /// changing anything on disk (`--gc --dry-run`).
    pub fn open_existing(data_dir: &Path, options: Options, read_only: bool) -> Result<Registry> {
        // Even where the registry is a cluster's (index and blobs elsewhere), a --data-dir that
        // does not exist is a typo to point out, not a place to make.
        if !data_dir.is_dir() {
            return Err(Error::Config(format!(
                "{}: not an atoll data directory (no such directory)",
                data_dir.display()
            )));
        }
        let store = BlobStore::existing(data_dir, &options.blobs)?;
        if let IndexConfig::Postgres(pg) = &options.index {
            let index = Index::connect(pg)?;
            return Ok(Registry::of(store, index, options));
        }
        let db = store.layout().index_db();
        if !db.is_file() {
            return Err(Error::Config(format!(
                "{}: not an atoll data directory (no index.db)",
                data_dir.display()
            )));
        }
        let index = if read_only {
            Index::open_read_only(&db)?
        } else {
            Index::open_for_command(&db)?
        };
        Ok(Registry::of(store, index, options))
    }

    fn of(store: BlobStore, index: Index, options: Options) -> Registry {
        Registry {
            store,
            index,
            sessions: Sessions::default(),
            options,
            clock: crate::clock::now,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Live upload sessions (for metrics).
    pub fn upload_sessions(&self) -> usize {
        self.sessions.len()
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// True when `accessed_at` is stale enough that a read should refresh it.
    fn due_for_touch(&self, accessed_at: i64, now: i64) -> bool {
        now - accessed_at >= self.options.touch_interval
    }

    /// The repository's id, or NAME_UNKNOWN.
    fn repo(&self, c: &Conn, name: &RepoName) -> Result<RepoId> {
        queries::repo_id(c, name.as_str())?.ok_or_else(|| Error::NameUnknown(name.to_string()))
    }

    /// What the registry holds (for `/metrics`).
    pub fn holdings(&self) -> Result<crate::index::queries::Holdings> {
        self.index.read(queries::holdings)
    }

    /// What a start does before serving, when nothing is in flight yet: unlinks the files an
    /// interrupted collection doomed (unless an `atoll --gc` holds the lock: it finishes its
    /// own), and removes upload files with no session and temporary files whose writer is gone.
    /// Whether this node runs this interval's turn of the periodic job `name` (every `period`
    /// seconds): always on one box; on a shared index, only if no node has started it within
    /// most of a period (a tenth is left for timers that drift), which this call records.
    pub fn claim_turn(&self, name: &str, period: i64) -> Result<bool> {
        if !self.index.is_shared() {
            return Ok(true);
        }
        let (now, within) = (self.now(), period - period / 10);
        self.index
            .write(|tx| queries::claim_job(tx, name, now, within))
    }

    /// The key tokens are signed with: random for each start of one box (its tokens end with
    /// it); on a shared index, one key for every node, kept there, so that a token one node
    /// issued works on the others.
    pub fn token_key(&self) -> Result<[u8; 32]> {
        let fresh = crate::ids::random_key();
        if !self.index.is_shared() {
            return Ok(fresh);
        }
        let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        let stored = self
            .index
            .write(|tx| queries::shared_secret(tx, "token-key", &fresh))?;
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = stored
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::Corrupt("the index's token key is not 64 hex digits".into())
                })?;
        }
        Ok(key)
    }

    /// Takes or renews this node's lease on fetching `digest` from an upstream for `secs`
    /// seconds: true if this node is to fetch it. Always true on one box (its fetches are
    /// shared in memory, `proxy/fill.rs`).
    pub fn lease_fill(&self, digest: &Digest, node: &str, secs: i64) -> Result<bool> {
        if !self.index.is_shared() {
            return Ok(true);
        }
        let (key, now) = (digest.to_string(), self.now());
        self.index
            .write(|tx| queries::lease_fill(tx, &key, node, now, now + secs))
    }

    /// Ends this node's lease on fetching `digest`.
    pub fn end_fill_lease(&self, digest: &Digest, node: &str) -> Result<()> {
        if !self.index.is_shared() {
            return Ok(());
        }
        let key = digest.to_string();
        self.index
            .write(|tx| queries::end_fill_lease(tx, &key, node))
    }

    /// Whether the registry holds blob `digest` (in any repository).
    pub fn holds_blob(&self, digest: &Digest) -> Result<bool> {
        let key = digest.to_string();
        self.index.read(|c| queries::blob_exists(c, &key))
    }

    pub fn recover(&self) -> Result<()> {
        if let Ok(_lock) = self.gc_lock() {
            let (finished, errors) = self.finish_unlinks()?;
            if finished > 0 {
                log::info!(
                    "removed {finished} blob files an interrupted garbage collection had left"
                );
            }
            for e in errors {
                log::warn!(
                    "{e} (a blob file an interrupted garbage collection left; tried again at the \
                     next one)"
                );
            }
        }
        let leftovers = self.purge_uploads(i64::MIN, i64::MAX, None)?;
        if leftovers > 0 {
            log::info!("removed {leftovers} upload files left by an earlier run");
        }
        let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        let temps = self.store.clean_tmp(alive)?;
        if temps > 0 {
            log::info!("removed {temps} temporary files left by an earlier run");
        }
        Ok(())
    }

    /// For `/readyz`: the index answers, the data directory takes a write and the blob
    /// store's engine answers (an unreachable bucket is not ready).
    pub fn check_ready(&self) -> Result<()> {
        self.index.read(queries::answers)?;
        self.store.check()
    }

    /// Where the blobs are, for the log.
    pub fn blob_store(&self) -> String {
        self.store.describe()
    }
}

/// The store, for callers that bring bytes of their own: they write them through an ingest (or
/// stage them whole) and hand the staged file back to be published (`cache_blob`, `register`).
impl Registry {
    /// A new temporary file, hashed in `algorithm` as it is written (a proxy fill).
    pub fn ingest(&self, algorithm: Algorithm) -> Result<Ingest> {
        self.store.ingest(algorithm)
    }

    /// [`Self::ingest`] for `needed` bytes that `what` announced: refused at once (disk full)
    /// when the disk has less room.
    pub fn ingest_for(&self, needed: u64, what: &str, algorithm: Algorithm) -> Result<Ingest> {
        self.store.ingest_for(needed, what, algorithm)
    }

    /// `bytes` in a temporary file, fsynced (a manifest an import generated).
    pub fn stage(&self, bytes: &[u8]) -> Result<Staged> {
        self.store.stage_bytes(bytes)
    }

    /// A blob's bytes, whichever repositories link it: for imports, which ask [`Self::holds`]
    /// first. Clients read through [`Self::blob`], which checks the link.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.store.read_blob(digest)
    }

    /// [`Self::read_blob`], opened to be read as a stream (blocking).
    pub fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        self.store.open_blob(digest)?.reader()
    }
}
