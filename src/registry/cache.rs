//! The pull-through cache's side of the registry: where a repository's content comes from,
//! storing what was fetched from an upstream, and applying eviction.
//!
//! A cached repository (`repos.upstream` set) holds only what clients pulled through it: a
//! manifest is stored when fetched, without requiring its blobs or children (they come when
//! asked for), and a blob is published and linked when its fetch completes and verifies.
//! Pushes never write into a cached repository, and garbage collection never removes its
//! manifests: eviction does, then frees the blobs nothing else needs.

use std::collections::{HashMap, HashSet};

use super::manifests::insert_parsed;
use super::Registry;
use crate::console::DebugLog;
use crate::digest::{Digest, Key};
use crate::error::{Error, Result};
use crate::gc::evict;
use crate::gc::GcReport;
use crate::index::queries;
use crate::manifest;
use crate::reference::{RepoName, Tag};
use crate::store::Staged;

/// Where a repository's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// No repository of that name.
    None,
    /// Pushed here.
    Local,
    /// A cache of this upstream.
    Cached(String),
}

/// What an eviction run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub manifests: u64,
    pub bytes: u64,
    /// Bytes the cache holds afterwards.
    pub held: u64,
}

impl Registry {
    pub fn provenance(&self, name: &RepoName) -> Result<Provenance> {
        Ok(
            match self
                .index
                .read(|c| queries::repo_origin(c, name.as_str()))?
            {
                None => Provenance::None,
                Some(None) => Provenance::Local,
                Some(Some(u)) => Provenance::Cached(u),
            },
        )
    }

    /// Stores a manifest fetched from `upstream` (the digest was verified by the caller), and
    /// points `tag` at it. Blobs and children are not required: they are fetched when asked.
    pub fn cache_manifest(
        &self,
        local: &RepoName,
        upstream: &str,
        digest: &Digest,
        body: &[u8],
        content_type: Option<&str>,
        tag: Option<&Tag>,
    ) -> Result<manifest::Manifest> {
        let parsed = manifest::parse(body, content_type)?;
        let staged = self.store.stage_bytes(body)?;
        self.store.send(&staged, digest)?;
        let key = digest.to_string();
        let now = self.now();
        self.index.write(|tx| {
            let repo = queries::ensure_cached_repo(tx, local.as_str(), upstream, now)?;
            queries::insert_blob(tx, &key, body.len() as u64, now)?;
            self.store.commit(staged, digest)?;
            queries::link_blob(tx, repo, &key, now)?;
            insert_parsed(tx, repo, &key, body.len() as u64, &parsed, now)?;
            queries::touch_manifest(tx, repo, &key, now)?;
            if let Some(t) = tag {
                queries::set_tag(tx, repo, t.as_str(), &key, now)?;
            }
            Ok(())
        })?;
        Ok(parsed)
    }

    /// Points a cached repository's tag at a manifest it holds (the upstream moved the tag).
    pub fn cache_tag(&self, local: &RepoName, tag: &Tag, digest: &str) -> Result<()> {
        let now = self.now();
        self.index.write(|tx| {
            let repo = queries::repo_id(tx, local.as_str())?
                .ok_or_else(|| Error::NameUnknown(local.to_string()))?;
            queries::set_tag(tx, repo, tag.as_str(), digest, now)
        })
    }

    /// The size of blob `digest` as the descriptors of the manifests cached under `local` give
    /// it: `None` when none names it, or when they disagree (one of them is wrong, and only
    /// the digest can tell which).
    pub fn descriptor_size(&self, local: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let sizes = self
            .index
            .read(|c| queries::descriptor_sizes(c, local.as_str(), &digest.to_string()))?;
        Ok(match sizes[..] {
            [size] => Some(size),
            _ => None,
        })
    }

    /// Publishes a blob whose fetch completed and verified, and links it to the cache.
    pub fn cache_blob(
        &self,
        local: &RepoName,
        upstream: &str,
        digest: &Digest,
        size: u64,
        staged: Staged,
    ) -> Result<()> {
        self.store.send(&staged, digest)?;
        let key = digest.to_string();
        let now = self.now();
        self.index.write(|tx| {
            let repo = queries::ensure_cached_repo(tx, local.as_str(), upstream, now)?;
            queries::insert_blob(tx, &key, size, now)?;
            self.store.commit(staged, digest)?;
            queries::link_blob(tx, repo, &key, now)
        })
    }

    /// Bytes the cached repositories hold.
    pub fn cached_bytes(&self) -> Result<u64> {
        self.index.read(queries::cached_bytes)
    }

    /// One eviction run: chooses (`gc::evict`), removes the chosen manifests (re-checked:
    /// one read since is kept), then deletes the blobs nothing else needs, including those an
    /// earlier run had to leave because they were read inside the grace window.
    pub fn evict(&self, policy: &evict::Policy, pins: &[String], now: i64) -> Result<Evicted> {
        let (manifests, blob_rows) = self.index.read_consistent(|tx| {
            Ok((
                queries::cached_manifests(tx)?,
                queries::cached_manifest_blobs(tx)?,
            ))
        })?;
        let mut blob_index: HashMap<String, usize> = HashMap::new();
        let mut sizes: Vec<u64> = Vec::new();
        let mut index_of = |d: &str, size: u64| {
            *blob_index.entry(d.to_owned()).or_insert_with(|| {
                sizes.push(size);
                sizes.len() - 1
            })
        };
        let mut per_manifest: HashMap<(i64, &str), Vec<usize>> = HashMap::new();
        for (repo, m, d, size) in &blob_rows {
            let i = index_of(d, *size);
            per_manifest.entry((*repo, m.as_str())).or_default().push(i);
        }
        let manifest_sizes = self.index.read(queries::manifest_sizes)?;
        let entries: Vec<evict::Entry> = manifests
            .iter()
            .map(|m| {
                let own = index_of(
                    &m.digest,
                    manifest_sizes.get(&m.digest).copied().unwrap_or(0),
                );
                let mut blobs = per_manifest
                    .get(&(m.repo, m.digest.as_str()))
                    .cloned()
                    .unwrap_or_default();
                blobs.push(own);
                evict::Entry {
                    last_access: m.accessed_at,
                    pinned: evict::pinned(&m.repo_name, pins),
                    blobs,
                }
            })
            .collect();
        let (chosen, _) = evict::choose(&entries, &sizes, now, policy);
        let leftovers = self.index.read(queries::cached_unreferenced_blobs)?;
        let held: u64 = sizes.iter().sum::<u64>() + leftovers.iter().map(|(_, s)| s).sum::<u64>();
        let mut out = Evicted {
            held,
            ..Evicted::default()
        };
        if chosen.is_empty() && leftovers.is_empty() {
            return Ok(out);
        }
        let mut freed_candidates: HashSet<usize> = HashSet::new();
        for batch in chosen.chunks(256) {
            let removed = self.index.write(|tx| {
                let mut removed = Vec::new();
                for &i in batch {
                    let m = &manifests[i];
                    // Read since the choice: it stays.
                    let row = queries::manifest_by_digest(tx, m.repo, &m.digest)?;
                    if row.is_some_and(|r| r.accessed_at <= m.accessed_at)
                        && queries::delete_manifest(tx, m.repo, &m.digest)?
                    {
                        removed.push(i);
                    }
                }
                Ok(removed)
            })?;
            for i in removed {
                out.manifests += 1;
                freed_candidates.extend(entries[i].blobs.iter().copied());
            }
        }
        let by_index: HashMap<usize, &String> = blob_index.iter().map(|(d, &i)| (i, d)).collect();
        let mut candidates: Vec<(Key, u64)> = freed_candidates
            .into_iter()
            .map(|i| (Key::parse(by_index[&i]), sizes[i]))
            .chain(
                leftovers
                    .into_iter()
                    .map(|(d, size)| (Key::parse(&d), size)),
            )
            .collect();
        candidates.sort();
        candidates.dedup();
        let candidates: Vec<(&Key, u64)> = candidates.iter().map(|(d, s)| (d, *s)).collect();
        let mut report = GcReport::default();
        // Not chosen from a complete mark: every row is checked.
        self.sweep_blobs(
            &candidates,
            crate::gc::cutoff(now, self.options.eviction_grace),
            None,
            &mut report,
            &mut DebugLog("evict"),
        )?;
        out.bytes = report.deleted_bytes;
        out.held = held.saturating_sub(out.bytes);
        self.index.write(queries::delete_empty_repos)?;
        Ok(out)
    }
}
