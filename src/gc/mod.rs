//! Garbage collection policy: what stays, what goes, and the report. Pure: it takes the
//! index's rows and `now`'s cutoff as values and returns decisions; `registry/gc.rs` loads the
//! rows and applies the decisions crash-safely, re-checking each one inside the transaction
//! that deletes it.
//!
//! What stays (the mark):
//! - every tagged manifest, and, unless untagged ones are to be deleted, every untagged one
//!   except a referrer whose subject is gone;
//! - every manifest created or read within the grace window (a push may be about to tag it);
//! - the children of a kept index, and the referrers (signatures, SBOMs) of a kept manifest,
//!   transitively;
//! - every blob a kept manifest names or is, and every blob created, linked or read within the
//!   grace window (an upload or a manifest push may be about to use it).
//!
//! Everything else goes: manifests first (their rows and tags), then the blobs nothing needs,
//! then files under `blobs/` that no index row names.
//!
//! `evict.rs` is the pull-through cache's policy of the same kind: what it lets go.

pub mod evict;

// Digest-keyed maps use foldhash, not the standard SipHash: hashing 71-character digests was
// 5% of a collection's time, all of it on the collection's own thread. The keys are digests of
// stored content, not strings a client picks freely, and the seed is per process. Blobs, the
// many, are found through a `Fanout` instead (digest/key.rs).
use foldhash::{HashMap, HashMapExt};

use crate::digest::{Fanout, Key};
use crate::index::queries::{GcBlob, GcEdge, GcManifest, RepoId};
use crate::units::human_bytes;

/// What one collection does.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (never one a kept index names).
    pub delete_untagged: bool,
    /// Seconds: nothing created, linked or read more recently is deleted.
    pub grace: i64,
    /// Seconds: upload sessions older than this are purged (`None`: leave them).
    pub upload_ttl: Option<i64>,
}

/// The first second inside a grace window of `grace` seconds that ends at `now`: a row
/// created, linked or read at or after it is protected. Times are whole seconds, so a window of
/// `grace` seconds is the `grace` whole seconds up to and including `now`'s, and a grace of
/// zero protects nothing, not even what changed in the current second.
pub fn cutoff(now: i64, grace: i64) -> i64 {
    now - grace + 1
}

/// Which manifests go: indexes into `manifests`. `edges` are from `queries::gc_edges` over the
/// same list (subjects left out).
pub fn manifests_to_delete(
    manifests: &[GcManifest],
    edges: &[GcEdge],
    delete_untagged: bool,
    cutoff: i64,
) -> Vec<usize> {
    let by_key: HashMap<(RepoId, &str), usize> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.repo, m.digest.as_str()), i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for e in edges {
        if let (Some(p), Some(c)) = (e.parent, e.child) {
            children.entry(p as usize).or_default().push(c as usize);
        }
    }
    let mut referrers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, m) in manifests.iter().enumerate() {
        if let Some(&s) = m.subject.as_deref().and_then(|s| by_key.get(&(m.repo, s))) {
            referrers.entry(s).or_default().push(i);
        }
    }
    let orphan = |m: &GcManifest| {
        m.subject
            .as_deref()
            .is_some_and(|s| !by_key.contains_key(&(m.repo, s)))
    };
    let recent = |m: &GcManifest| m.created_at >= cutoff || m.accessed_at >= cutoff;
    let mut kept = vec![false; manifests.len()];
    let mut stack: Vec<usize> = manifests
        .iter()
        .enumerate()
        .filter(|(_, m)| m.tagged || recent(m) || (!delete_untagged && !orphan(m)))
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut kept[i], true) {
            continue;
        }
        for next in children
            .get(&i)
            .into_iter()
            .chain(referrers.get(&i))
            .flatten()
        {
            if !kept[*next] {
                stack.push(*next);
            }
        }
    }
    (0..manifests.len()).filter(|&i| !kept[i]).collect()
}

/// Which blob rows kept manifests need, one flag a row: the manifests themselves and what they
/// name (an edge whose manifest is not in the list keeps its digest). `blobs` is sorted, and
/// `fanout` made over it, as `queries::gc_blobs` returns them.
pub fn live_blobs(
    blobs: &[GcBlob],
    fanout: &Fanout,
    manifests: &[GcManifest],
    edges: &[GcEdge],
    doomed: &[usize],
) -> Vec<bool> {
    let mut gone = vec![false; manifests.len()];
    for &i in doomed {
        gone[i] = true;
    }
    let mut live = vec![false; blobs.len()];
    let mut mark = |key: &Key| {
        if let Some(i) = fanout.find(blobs, |b| &b.digest, key) {
            live[i] = true;
        }
    };
    for (m, _) in manifests.iter().zip(&gone).filter(|(_, &gone)| !gone) {
        mark(&Key::parse(&m.digest));
    }
    for e in edges {
        if e.parent.is_none_or(|p| !gone[p as usize]) {
            mark(&e.digest);
        }
    }
    live
}

/// Which blob rows go: not live, and untouched since `cutoff`.
pub fn blobs_to_delete(blobs: &[GcBlob], live: &[bool], cutoff: i64) -> Vec<usize> {
    blobs
        .iter()
        .zip(live)
        .enumerate()
        .filter(|(_, (b, &live))| b.last_used < cutoff && !live)
        .map(|(i, _)| i)
        .collect()
}

/// What a collection found and did (or would do, in a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub kept_manifests: u64,
    pub kept_blobs: u64,
    pub kept_bytes: u64,
    /// `repo@digest` of each manifest deleted.
    pub deleted_manifests: Vec<String>,
    pub deleted_blobs: u64,
    pub deleted_bytes: u64,
    /// Files under blobs/ with no index row, deleted.
    pub orphan_files: u64,
    pub orphan_bytes: u64,
    /// Index rows whose file was already gone (the rows are deleted all the same).
    pub missing_files: u64,
    pub purged_uploads: u64,
    /// Files an interrupted collection had doomed, unlinked now.
    pub recovered: u64,
    /// Problems met and stepped over.
    pub errors: Vec<String>,
    pub elapsed_ms: u64,
}

impl GcReport {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut s = format!(
            "gc: kept {} manifests and {} blobs ({}); {verb} {} manifests, {} blobs and {} files ({}); {} stale uploads",
            self.kept_manifests,
            self.kept_blobs,
            human_bytes(self.kept_bytes),
            self.deleted_manifests.len(),
            self.deleted_blobs,
            self.orphan_files,
            human_bytes(self.deleted_bytes + self.orphan_bytes),
            self.purged_uploads,
        );
        if self.recovered > 0 {
            s.push_str(&format!(
                "; {} files an interrupted collection left, removed",
                self.recovered
            ));
        }
        if self.missing_files > 0 {
            s.push_str(&format!(
                "; {} index rows had lost their file",
                self.missing_files
            ));
        }
        if !self.errors.is_empty() {
            s.push_str(&format!("; {} problems (see above)", self.errors.len()));
        }
        s.push_str(&format!(" in {:.1}s", self.elapsed_ms as f64 / 1000.0));
        if self.dry_run {
            s.push_str(" (dry run: nothing changed)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: i64 = 100;
    const SHA: &str = "sha256:5555555555555555555555555555555555555555555555555555555555555555";
    const CUTOFF: i64 = 1_000;

    fn m(repo: RepoId, d: &str, tagged: bool, subject: Option<&str>) -> GcManifest {
        GcManifest {
            repo,
            digest: d.into(),
            tagged,
            subject: subject.map(Into::into),
            created_at: OLD,
            accessed_at: OLD,
        }
    }

    /// An edge as `queries::gc_edges` reads it from a row (repo, manifest, kind, digest).
    fn edge(ms: &[GcManifest], repo: RepoId, parent: &str, kind: &str, d: &str) -> GcEdge {
        let at = |d: &str| {
            ms.iter()
                .position(|m| m.repo == repo && m.digest == d)
                .map(|i| i as u32)
        };
        GcEdge {
            parent: at(parent),
            child: at(d).filter(|_| kind == "child"),
            digest: Key::parse(d),
        }
    }

    fn doomed<'a>(ms: &'a [GcManifest], edges: &[GcEdge], untagged: bool) -> Vec<&'a str> {
        manifests_to_delete(ms, edges, untagged, CUTOFF)
            .into_iter()
            .map(|i| ms[i].digest.as_str())
            .collect()
    }

    #[test]
    fn untagged_manifests_stay_unless_asked() {
        let ms = vec![m(1, "tagged", true, None), m(1, "untagged", false, None)];
        assert!(doomed(&ms, &[], false).is_empty());
        assert_eq!(doomed(&ms, &[], true), vec!["untagged"]);
    }

    #[test]
    fn a_kept_index_keeps_every_child_even_when_deleting_untagged() {
        let ms = vec![
            m(1, "index", true, None),
            m(1, "amd64", false, None),
            m(1, "arm64", false, None),
            m(1, "nested", false, None),
            m(1, "inner", false, None),
            m(1, "stray", false, None),
        ];
        let edges = vec![
            edge(&ms, 1, "index", "child", "amd64"),
            edge(&ms, 1, "index", "child", "arm64"),
            edge(&ms, 1, "index", "child", "nested"),
            edge(&ms, 1, "nested", "child", "inner"),
            edge(&ms, 1, "amd64", "layer", "layer-blob"),
        ];
        assert_eq!(doomed(&ms, &edges, true), vec!["stray"]);
    }

    #[test]
    fn an_untagged_index_takes_its_children_along() {
        let ms = vec![m(1, "index", false, None), m(1, "amd64", false, None)];
        let edges = vec![edge(&ms, 1, "index", "child", "amd64")];
        assert_eq!(doomed(&ms, &edges, true), vec!["index", "amd64"]);
    }

    #[test]
    fn referrers_follow_their_subject() {
        let ms = vec![
            m(1, "image", true, None),
            m(1, "sbom", false, Some("image")),
            m(1, "sig-of-sbom", false, Some("sbom")),
            m(1, "orphan-sig", false, Some("long-gone")),
            m(2, "other-repo-sig", false, Some("image")),
        ];
        // Kept subjects keep their referrers (transitively); a referrer whose subject is gone
        // goes even when untagged manifests are otherwise kept; repositories do not mix.
        assert_eq!(
            doomed(&ms, &[], false),
            vec!["orphan-sig", "other-repo-sig"]
        );
        assert_eq!(doomed(&ms, &[], true), vec!["orphan-sig", "other-repo-sig"]);
        let mut untagged_image = ms.clone();
        untagged_image[0].tagged = false;
        assert_eq!(doomed(&untagged_image, &[], true).len(), 5);
    }

    #[test]
    fn the_grace_window_protects_new_and_recently_read_manifests_and_what_they_name() {
        let mut fresh = m(1, "fresh-index", false, None);
        fresh.created_at = CUTOFF + 5;
        let mut read = m(1, "read", false, None);
        read.accessed_at = CUTOFF;
        let ms = vec![fresh, read, m(1, "child", false, None)];
        let edges = vec![edge(&ms, 1, "fresh-index", "child", "child")];
        assert!(doomed(&ms, &edges, true).is_empty());
    }

    #[test]
    fn live_blobs_are_those_kept_manifests_name_and_old_unused_ones_go() {
        let ms = vec![m(1, "keep", true, None), m(1, "drop", false, None)];
        let edges = vec![
            edge(&ms, 1, "keep", "config", "c1"),
            edge(&ms, 1, "keep", "layer", "shared"),
            edge(&ms, 1, "drop", "layer", "shared"),
            edge(&ms, 1, "drop", "layer", "only-dropped"),
            // Its manifest is not in the list (no foreign key should allow it): kept anyway.
            edge(&ms, 1, "unlisted", "layer", "named-by-unlisted"),
        ];
        let gone = manifests_to_delete(&ms, &edges, true, CUTOFF);
        let blob = |d: &str, last_used| GcBlob {
            digest: Key::parse(d),
            size: 1,
            last_used,
        };
        let mut blobs = vec![
            blob("keep", OLD),
            blob("drop", OLD),
            blob("c1", OLD),
            blob("shared", OLD),
            blob("only-dropped", OLD),
            blob("named-by-unlisted", OLD),
            blob("dangling", OLD),
            blob("just-uploaded", CUTOFF),
            blob(SHA, OLD),
        ];
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        let fanout = Fanout::new(blobs.iter().map(|b| &b.digest));
        let live = live_blobs(&blobs, &fanout, &ms, &edges, &gone);
        let go: Vec<String> = blobs_to_delete(&blobs, &live, CUTOFF)
            .into_iter()
            .map(|i| blobs[i].digest.to_string())
            .collect();
        assert_eq!(go, vec![SHA, "dangling", "drop", "only-dropped"]);
    }

    #[test]
    fn summaries_read_well() {
        let r = GcReport {
            dry_run: true,
            kept_manifests: 3,
            deleted_blobs: 2,
            deleted_bytes: 3 << 20,
            ..GcReport::default()
        };
        assert_eq!(
            r.summary(),
            "gc: kept 3 manifests and 0 blobs (0 B); would delete 0 manifests, 2 blobs and 0 files (3.0 MiB); 0 stale uploads in 0.0s (dry run: nothing changed)"
        );
    }
}
