//! Typed queries over the index. Each function is one statement (or a short fixed sequence),
//! takes a `Connection` (a `Transaction` derefs to one) and returns plain values. The registry
//! decides which of them run together in one transaction. Every SQL statement atoll runs is in
//! this folder, one file a concern.

mod blobs;
pub mod browse;
mod cache;
mod cluster;
mod gc;
mod holdings;
mod manifests;
mod repos;
mod uploads;

pub use blobs::*;
pub use cache::*;
pub use cluster::*;
pub use gc::*;
pub use holdings::*;
pub use manifests::*;
pub use repos::*;
pub use uploads::*;

pub type RepoId = i64;

/// A manifest row: what a GET needs to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<String>,
    pub accessed_at: i64,
}

/// A manifest that names a subject, as the referrers API and the web page list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    /// When it was pushed (Unix seconds).
    pub created_at: i64,
}

/// What is inserted for a pushed manifest.
pub struct NewManifest<'a> {
    pub digest: &'a str,
    pub media_type: &'a str,
    pub size: u64,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub annotations: Option<&'a str>,
}
