//! Typed read queries for the web page (`registry/browse.rs`): repositories with their counts,
//! tags with the manifest each points at, a manifest's total size and platforms, what the
//! pull-through cache holds (referrers: `manifests::referrers`, with a limit). Read-only, one statement each, every one
//! bounded by a `LIMIT` or by one repository or manifest, so a page costs the same with 10 or
//! 10,000 repositories.

use std::collections::HashMap;

use super::RepoId;
use crate::args;
use crate::error::Result;
use crate::index::{Conn, Dialect};

/// A repository as the page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRow {
    pub id: RepoId,
    pub name: String,
    /// The upstream a cached repository mirrors; `None` for one pushed here.
    pub upstream: Option<String>,
    pub created_at: i64,
    pub tags: u64,
    pub manifests: u64,
    /// When a tag last moved (`None`: no tags).
    pub updated_at: Option<i64>,
    /// Manifests nothing reaches: no tag, no subject (a referrer is shown under its subject),
    /// not a child of an index.
    pub untagged: u64,
}

/// Repositories holding at least one manifest, after `last` in name order, whose name matches
/// the `LIKE` pattern (`None`: all) in any case, `limit` at most. (Names are lower case, so the
/// pattern is lowered: PostgreSQL's `LIKE` minds case, SQLite's does not.)
pub fn repos(
    c: &Conn,
    pattern: Option<&str>,
    last: Option<&str>,
    limit: u32,
) -> Result<Vec<RepoRow>> {
    c.rows(
        "SELECT r.id, r.name, r.upstream, r.created_at,
                (SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id),
                (SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id),
                (SELECT MAX(t.updated_at) FROM tags t WHERE t.repo_id = r.id),
                (SELECT COUNT(*) FROM manifests m
                  WHERE m.repo_id = r.id AND m.subject IS NULL
                    AND NOT EXISTS (SELECT 1 FROM tags t
                                     WHERE t.repo_id = r.id AND t.digest = m.digest)
                    AND NOT EXISTS (SELECT 1 FROM manifest_refs c WHERE c.repo_id = r.id
                                       AND c.digest = m.digest AND c.kind = 'child'))
           FROM repos r
          WHERE r.name > ?1 AND (CAST(?2 AS TEXT) IS NULL OR r.name LIKE LOWER(?2) ESCAPE '\\')
            AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
          ORDER BY r.name LIMIT ?3",
        args![last.unwrap_or(""), pattern, limit],
        |r| {
            Ok(RepoRow {
                id: r.int(0)?,
                name: r.text(1)?,
                upstream: r.opt_text(2)?,
                created_at: r.int(3)?,
                tags: r.u64(4)?,
                manifests: r.u64(5)?,
                updated_at: r.opt_int(6)?,
                untagged: r.u64(7)?,
            })
        },
    )
}

/// A page of tags: `?1` the repository, `?2` the last tag of the previous page, `?3` the size.
macro_rules! tag_page {
    () => {
        "page(name, digest, updated_at) AS (
             SELECT name, digest, updated_at FROM tags
              WHERE repo_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3)"
    };
}

/// A tag with the manifest it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    /// When the tag was last pointed at this digest.
    pub updated_at: i64,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub created_at: i64,
    pub accessed_at: i64,
    /// An index's children's platforms (`os/arch[/variant]`), sorted, without repeats.
    pub platforms: Vec<String>,
    /// Manifests naming this one as their subject.
    pub referrers: u64,
}

/// Tags after `last` in name order, `limit` at most: one statement for the page, whatever
/// its size.
pub fn tags(c: &Conn, repo: RepoId, last: Option<&str>, limit: u32) -> Result<Vec<TagRow>> {
    let sql = match c.dialect() {
        Dialect::Sqlite => concat!(
            "WITH ",
            tag_page!(),
            "
             SELECT p.name, p.digest, p.updated_at, m.media_type, m.artifact_type,
                    m.created_at, m.accessed_at,
                    (SELECT group_concat(DISTINCT c.platform) FROM manifest_refs c
                      WHERE c.repo_id = ?1 AND c.manifest = p.digest AND c.kind = 'child'),
                    (SELECT COUNT(*) FROM manifests x WHERE x.repo_id = ?1 AND x.subject = p.digest)
               FROM page p JOIN manifests m ON m.repo_id = ?1 AND m.digest = p.digest
              ORDER BY p.name"
        ),
        Dialect::Postgres => concat!(
            "WITH ",
            tag_page!(),
            "
             SELECT p.name, p.digest, p.updated_at, m.media_type, m.artifact_type,
                    m.created_at, m.accessed_at,
                    (SELECT string_agg(DISTINCT c.platform, ',') FROM manifest_refs c
                      WHERE c.repo_id = ?1 AND c.manifest = p.digest AND c.kind = 'child'),
                    (SELECT COUNT(*) FROM manifests x WHERE x.repo_id = ?1 AND x.subject = p.digest)
               FROM page p JOIN manifests m ON m.repo_id = ?1 AND m.digest = p.digest
              ORDER BY p.name"
        ),
    };
    c.rows(sql, args![repo, last.unwrap_or(""), limit], |r| {
        let platforms = r.opt_text(7)?;
        let mut platforms: Vec<String> = platforms
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::to_owned)
            .collect();
        platforms.sort();
        Ok(TagRow {
            tag: r.text(0)?,
            digest: r.text(1)?,
            updated_at: r.int(2)?,
            media_type: r.text(3)?,
            artifact_type: r.opt_text(4)?,
            created_at: r.int(5)?,
            accessed_at: r.int(6)?,
            platforms,
            referrers: r.u64(8)?,
        })
    })
}

/// For the same page of tags as [`tags`]: the bytes stored for each manifest and everything
/// it names (config, layers, an index's children and theirs), each blob counted once, by
/// manifest digest. (`CROSS JOIN` keeps SQLite walking from `reach` into `manifest_refs` by
/// its primary key: left to itself, the bundled SQLite scans every edge of the repository at
/// each step.)
pub fn total_sizes(
    c: &Conn,
    repo: RepoId,
    last: Option<&str>,
    limit: u32,
) -> Result<HashMap<String, u64>> {
    let sql = match c.dialect() {
        Dialect::Sqlite => concat!(
            "WITH RECURSIVE ",
            tag_page!(),
            ",
             reach(root, digest) AS (
                 SELECT DISTINCT digest, digest FROM page
                 UNION
                 SELECT reach.root, r.digest FROM reach CROSS JOIN manifest_refs r
                     ON r.repo_id = ?1 AND r.manifest = reach.digest AND r.kind <> 'subject')
             SELECT reach.root, SUM(b.size) FROM reach JOIN blobs b ON b.digest = reach.digest
              GROUP BY reach.root"
        ),
        Dialect::Postgres => concat!(
            "WITH RECURSIVE ",
            tag_page!(),
            ",
             reach(root, digest) AS (
                 SELECT DISTINCT digest, digest FROM page
                 UNION
                 SELECT reach.root, r.digest FROM reach JOIN manifest_refs r
                     ON r.repo_id = ?1 AND r.manifest = reach.digest AND r.kind <> 'subject')
             SELECT reach.root, CAST(SUM(b.size) AS BIGINT)
               FROM reach JOIN blobs b ON b.digest = reach.digest
              GROUP BY reach.root"
        ),
    };
    Ok(c.rows(sql, args![repo, last.unwrap_or(""), limit], |r| {
        Ok((r.text(0)?, r.u64(1)?))
    })?
    .into_iter()
    .collect())
}

/// What the pull-through cache holds from one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRow {
    pub upstream: String,
    pub repos: u64,
    /// Bytes of the blobs its repositories link, each blob counted once.
    pub bytes: u64,
}

/// Cached repositories grouped by upstream.
pub fn upstreams(c: &Conn) -> Result<Vec<UpstreamRow>> {
    c.rows(
        "SELECT u.upstream, u.repos,
                (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b
                  WHERE b.digest IN (SELECT l.digest FROM repos r
                                       JOIN repo_blobs l ON l.repo_id = r.id
                                      WHERE r.upstream = u.upstream))
           FROM (SELECT upstream, COUNT(*) AS repos FROM repos
                  WHERE upstream IS NOT NULL GROUP BY upstream) u
          ORDER BY u.upstream",
        args![],
        |r| {
            Ok(UpstreamRow {
                upstream: r.text(0)?,
                repos: r.u64(1)?,
                bytes: r.u64(2)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::index::Index;

    /// 10,000 repositories of one tagged image each, and 10 tags in one of them.
    fn big_index(dir: &std::path::Path) -> Index {
        let index = Index::open(&dir.join("index.db")).unwrap();
        index
            .write(|tx| {
                tx.batch("INSERT INTO blobs VALUES ('sha256:c', 100, 1), ('sha256:l', 1000, 1);")?;
                for r in 0..10_000 {
                    tx.execute(
                        "INSERT INTO repos (id, name, created_at) VALUES (?1, ?2, 1)",
                        args![r + 1, &format!("site/app-{r:05}")],
                    )?;
                    let m = format!("sha256:m{r}");
                    tx.execute("INSERT INTO blobs VALUES (?1, 500, 1)", args![&m])?;
                    tx.execute(
                        "INSERT INTO manifests (repo_id, digest, media_type, size, created_at,
                                                accessed_at)
                         VALUES (?1, ?2, 'application/vnd.oci.image.manifest.v1+json', 500, 1, 1)",
                        args![r + 1, &m],
                    )?;
                    for (kind, d, size) in
                        [("config", "sha256:c", 100), ("layer", "sha256:l", 1000)]
                    {
                        tx.execute(
                            "INSERT INTO manifest_refs VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                            args![r + 1, &m, kind, d, size as i64],
                        )?;
                    }
                    let tags = if r == 0 { 10 } else { 1 };
                    for t in 0..tags {
                        tx.execute(
                            "INSERT INTO tags VALUES (?1, ?2, ?3, 1)",
                            args![r + 1, &format!("v{t}"), &m],
                        )?;
                    }
                }
                Ok(())
            })
            .unwrap();
        index
    }

    /// The slowest of three runs of `f`.
    fn timed<T>(f: impl Fn() -> T) -> (T, Duration) {
        let mut worst = Duration::ZERO;
        let mut out = None;
        for _ in 0..3 {
            let t = Instant::now();
            out = Some(f());
            worst = worst.max(t.elapsed());
        }
        (out.unwrap(), worst)
    }

    #[test]
    fn a_page_costs_the_same_at_the_start_and_the_end_of_10000_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let index = big_index(dir.path());
        index
            .read(|c| {
                let (first, t_first) = timed(|| repos(c, None, None, 21).unwrap());
                assert_eq!(first.len(), 21);
                assert_eq!(first[0].name, "site/app-00000");
                assert_eq!(first[0].tags, 10);
                let (deep, t_deep) = timed(|| repos(c, None, Some("site/app-09979"), 21).unwrap());
                assert_eq!(deep.len(), 20);
                assert_eq!(deep[0].name, "site/app-09980");
                let (hit, t_filter) = timed(|| repos(c, Some("%app-0999%"), None, 21).unwrap());
                assert_eq!(hit.len(), 10);
                let (sizes, t_sizes) = timed(|| total_sizes(c, first[0].id, None, 10).unwrap());
                assert_eq!(sizes["sha256:m0"], 1600);
                let (tags, t_tags) = timed(|| tags(c, first[0].id, None, 11).unwrap());
                assert_eq!(tags.len(), 10);
                eprintln!(
                    "10,000 repositories: first page {t_first:?}, last page {t_deep:?}, \
                     filtered {t_filter:?}, a page of tags {t_tags:?}, their sizes {t_sizes:?}"
                );
                // A name filter scans names (it matches anywhere in them); a page does not.
                // Bounds generous enough for a debug build on a loaded machine.
                for t in [t_first, t_deep, t_tags, t_sizes] {
                    assert!(t < Duration::from_millis(100), "{t:?}");
                }
                assert!(t_filter < Duration::from_millis(500), "{t_filter:?}");
                Ok(())
            })
            .unwrap();
    }
}
