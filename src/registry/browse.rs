//! What the web page shows, read from the index: repositories page by page (filtered by name),
//! each with its first tags; a tag's digest, type, platforms, total size, push and pull times
//! and referrers; what the pull-through cache holds; disk usage. Read-only: nothing here
//! refreshes `accessed_at`, so looking at the page never counts as a pull.
//!
//! The views derive `Serialize`: they are the JSON the page reads (`/ui/api/`), field for field.

use std::path::Path;

use crate::index::Conn;
use serde::Serialize;

use super::Registry;
use crate::error::Result;
use crate::index::queries::browse::{self, RepoRow, TagRow};
use crate::index::queries::Holdings;
use crate::index::queries::RepoId;
use crate::index::queries::{self, ReferrerRow};
use crate::reference::RepoName;

/// Referrers listed under one subject at most (the count says how many there are).
const MAX_REFERRERS: u32 = 20;

/// One page of repositories; `next` is the `last` to ask for the page after it.
#[derive(Clone, Debug, Serialize)]
pub struct RepoPage {
    pub repositories: Vec<RepoView>,
    pub next: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoView {
    pub name: String,
    /// Where a cached repository comes from; `None`: pushed here.
    pub upstream: Option<String>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub tag_count: u64,
    pub manifest_count: u64,
    /// Manifests no tag, index or subject reaches.
    pub untagged: u64,
    /// The first tags, in name order; `more_tags` when there are others.
    pub tags: Vec<TagView>,
    pub more_tags: bool,
}

/// One page of a repository's tags.
#[derive(Clone, Debug, Serialize)]
pub struct TagPage {
    pub name: String,
    pub tags: Vec<TagView>,
    pub next: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TagView {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Bytes stored for the manifest and everything it names, each blob once.
    pub size: u64,
    /// For an index: its children's platforms.
    pub platforms: Vec<String>,
    /// When the tag was pushed (or cached) to point at this digest.
    pub pushed_at: i64,
    /// When the manifest was last pulled, to within the index's touch interval; `None`: not
    /// since it was pushed.
    pub pulled_at: Option<i64>,
    pub referrers: Vec<ReferrerView>,
    /// How many referrers there are (`referrers` holds the first few).
    pub referrer_count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReferrerView {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    pub pushed_at: i64,
}

/// What the pull-through cache holds, per upstream, from the index.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheHoldings {
    pub upstreams: Vec<UpstreamView>,
    pub repositories: u64,
    /// Every blob a cached repository links, counted once (two upstreams may share one).
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UpstreamView {
    pub upstream: String,
    pub repositories: u64,
    pub bytes: u64,
}

/// The data directory's filesystem.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskView {
    /// Bytes of the blobs in the index.
    pub stored_bytes: u64,
    pub blobs: u64,
    /// Free to unprivileged writers, and the filesystem's size (`None` if unknown, or if the
    /// blobs are in an object store, which has no such figure).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Where the blobs are: `disk PATH`, or the object store's `s3://bucket/prefix at URL`.
    pub store: String,
}

/// A name filter as a `LIKE` pattern: the text anywhere in the name, `%`, `_` and `\` taken
/// literally, case-insensitive (repository names are lowercase). `None` for an empty filter.
pub fn like_pattern(filter: &str) -> Option<String> {
    let f = filter.trim();
    if f.is_empty() {
        return None;
    }
    let mut p = String::with_capacity(f.len() + 2);
    p.push('%');
    for ch in f.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    Some(p)
}

/// The artifact type of a tagged manifest, if it is an artifact: for an image the index
/// records the config's media type there (the referrers API's rule), which is no artifact.
pub fn artifact_type(recorded: Option<String>) -> Option<String> {
    const IMAGE_CONFIGS: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    recorded.filter(|t| !IMAGE_CONFIGS.contains(&t.as_str()))
}

/// "Last pulled": a read refreshes `accessed_at`, which starts equal to `created_at`.
pub fn pulled_at(created_at: i64, accessed_at: i64) -> Option<i64> {
    (accessed_at > created_at).then_some(accessed_at)
}

impl Registry {
    /// Repositories after `last` whose name contains `filter`, `n` at most, each with its
    /// first `tags_each` tags.
    pub fn browse_repos(
        &self,
        filter: &str,
        last: Option<&str>,
        n: u32,
        tags_each: u32,
    ) -> Result<RepoPage> {
        let pattern = like_pattern(filter);
        self.index.read_consistent(|tx| {
            let mut rows = browse::repos(tx, pattern.as_deref(), last, n.saturating_add(1))?;
            let more = rows.len() > n as usize;
            rows.truncate(n as usize);
            let next = more.then(|| rows.last().map(|r| r.name.clone())).flatten();
            let repositories = rows
                .into_iter()
                .map(|row| repo_view(tx, row, tags_each))
                .collect::<Result<_>>()?;
            Ok(RepoPage { repositories, next })
        })
    }

    /// A repository's tags after `last`, `n` at most.
    pub fn browse_tags(&self, name: &RepoName, last: Option<&str>, n: u32) -> Result<TagPage> {
        self.index.read_consistent(|tx| {
            let repo = self.repo(tx, name)?;
            let (tags, more) = tag_views(tx, repo, last, n)?;
            let next = more.then(|| tags.last().map(|t| t.tag.clone())).flatten();
            Ok(TagPage {
                name: name.to_string(),
                tags,
                next,
            })
        })
    }

    /// What the pull-through cache holds (repositories with an upstream).
    pub fn cache_holdings(&self) -> Result<CacheHoldings> {
        let rows = self.index.read(browse::upstreams)?;
        let mut out = CacheHoldings {
            bytes: self.cached_bytes()?,
            ..CacheHoldings::default()
        };
        for r in rows {
            out.repositories += r.repos;
            out.upstreams.push(UpstreamView {
                upstream: r.upstream,
                repositories: r.repos,
                bytes: r.bytes,
            });
        }
        Ok(out)
    }

    /// Bytes stored (from `holdings`, read from the index) and the data directory's free space
    /// (from the kernel), when the blobs are on that disk.
    pub fn disk(&self, holdings: &Holdings) -> DiskView {
        let on_disk = self.store.is_local();
        let (free_bytes, total_bytes) = match filesystem_space(self.store.layout().root()) {
            Some((free, total)) if on_disk => (Some(free), Some(total)),
            _ => (None, None),
        };
        DiskView {
            stored_bytes: holdings.blob_bytes,
            blobs: holdings.blobs,
            free_bytes,
            total_bytes,
            store: self.store.describe(),
        }
    }
}

fn repo_view(c: &Conn, row: RepoRow, tags_each: u32) -> Result<RepoView> {
    let (tags, more_tags) = tag_views(c, row.id, None, tags_each)?;
    Ok(RepoView {
        name: row.name,
        upstream: row.upstream,
        created_at: row.created_at,
        updated_at: row.updated_at,
        tag_count: row.tags,
        manifest_count: row.manifests,
        untagged: row.untagged,
        tags,
        more_tags,
    })
}

/// Tags after `last`, `n` at most, and whether more follow: two statements for the page, and
/// one more per tag that has referrers.
fn tag_views(c: &Conn, repo: RepoId, last: Option<&str>, n: u32) -> Result<(Vec<TagView>, bool)> {
    let mut rows = browse::tags(c, repo, last, n.saturating_add(1))?;
    let more = rows.len() > n as usize;
    rows.truncate(n as usize);
    let sizes = browse::total_sizes(c, repo, last, n)?;
    let views = rows
        .into_iter()
        .map(|row| {
            let size = sizes.get(&row.digest).copied().unwrap_or(0);
            tag_view(c, repo, row, size)
        })
        .collect::<Result<_>>()?;
    Ok((views, more))
}

fn tag_view(c: &Conn, repo: RepoId, row: TagRow, size: u64) -> Result<TagView> {
    let referrers = if row.referrers > 0 {
        queries::referrers(c, repo, &row.digest, None, Some(MAX_REFERRERS))?
    } else {
        Vec::new()
    };
    Ok(TagView {
        size,
        platforms: row.platforms,
        pulled_at: pulled_at(row.created_at, row.accessed_at),
        tag: row.tag,
        digest: row.digest,
        media_type: row.media_type,
        artifact_type: artifact_type(row.artifact_type),
        pushed_at: row.updated_at,
        referrers: referrers.into_iter().map(referrer_view).collect(),
        referrer_count: row.referrers,
    })
}

fn referrer_view(r: ReferrerRow) -> ReferrerView {
    ReferrerView {
        digest: r.digest,
        media_type: r.media_type,
        artifact_type: r.artifact_type,
        size: r.size,
        pushed_at: r.created_at,
    }
}

/// Free and total bytes of the filesystem holding `dir`, if the kernel says.
fn filesystem_space(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    let unit = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Some((
        s.f_bavail.saturating_mul(unit),
        s.f_blocks.saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_anywhere_and_literally() {
        assert_eq!(like_pattern(""), None);
        assert_eq!(like_pattern("   "), None);
        assert_eq!(like_pattern(" web ").as_deref(), Some("%web%"));
        assert_eq!(like_pattern("a_b%c\\").as_deref(), Some("%a\\_b\\%c\\\\%"));
        assert_eq!(like_pattern("org/app").as_deref(), Some("%org/app%"));
    }

    #[test]
    fn images_are_not_artifacts() {
        let t = |s: &str| artifact_type(Some(s.to_owned()));
        assert_eq!(t("application/vnd.oci.image.config.v1+json"), None);
        assert_eq!(t("application/vnd.docker.container.image.v1+json"), None);
        assert_eq!(
            t("application/spdx+json").as_deref(),
            Some("application/spdx+json")
        );
        assert_eq!(artifact_type(None), None);
    }

    #[test]
    fn a_manifest_counts_as_pulled_only_after_a_read_refreshed_it() {
        assert_eq!(pulled_at(100, 100), None);
        assert_eq!(pulled_at(100, 160), Some(160));
    }
}
