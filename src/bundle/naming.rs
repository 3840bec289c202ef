//! Which repository and tag each image of a bundle gets. Pure.
//!
//! Names come from the bundle (`io.containerd.image.name` or
//! `org.opencontainers.image.ref.name` annotations of an OCI layout, `RepoTags` of a Docker
//! archive) or from `--import-name`. A registry host in a name is dropped (the images now live
//! here). Names written by docker and containerd are relative to Docker Hub, so a one-part name
//! gets Docker Hub's `library/` (`alpine:3.20` and `docker.io/library/alpine:3.20` both land in
//! `library/alpine`, the path a mirror of Docker Hub serves); an OCI `ref.name` is taken as
//! written, so that an atoll export imports back under the same names.

use crate::digest::Digest;
use crate::reference::{RepoName, Tag};

use super::job::ImageName;

/// The convention of whoever wrote a name, which decides how a one-part name is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameConvention {
    /// docker `RepoTags`, containerd `io.containerd.image.name`: relative to Docker Hub.
    Docker,
    /// `org.opencontainers.image.ref.name`: as written.
    Oci,
}

/// A name found in the bundle. `repo` is `None` for a bare tag (an OCI `ref.name` like `1.0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub repo: Option<RepoName>,
    pub tag: Option<Tag>,
    /// The name pinned a digest (`name@sha256:...`) and no tag: import it untagged.
    pub pinned: bool,
    /// The digest the name states, if any (the caller checks it against what it names).
    pub digest: Option<Digest>,
}

/// Where one image goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub repo: RepoName,
    pub tag: Option<Tag>,
    pub root: Digest,
}

const DEFAULT_TAG: &str = "latest";

/// Parses `[host[:port]/]path[:tag][@digest]`.
pub fn parse_reference(s: &str, convention: NameConvention) -> Result<Found, String> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (
            r,
            Some(d.parse::<Digest>().map_err(|e| format!("{s:?}: {e}"))?),
        ),
        None => (s, None),
    };
    let (domain, path) = match rest.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), path)
        }
        _ => (None, rest),
    };
    let (path, tag) = match path.rsplit_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (path, None),
    };
    let hub = matches!(domain, Some("docker.io" | "index.docker.io"))
        || (domain.is_none() && convention == NameConvention::Docker);
    let path = if hub && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };
    let repo = path
        .parse::<RepoName>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    let tag = tag
        .map(|t| t.parse::<Tag>())
        .transpose()
        .map_err(|e| format!("{s:?}: {e}"))?;
    Ok(Found {
        repo: Some(repo),
        pinned: digest.is_some() && tag.is_none(),
        tag,
        digest,
    })
}

/// Reads an `org.opencontainers.image.ref.name`: a bare tag (`1.0`, the usual case) or a full
/// reference (`edge/app:1.0`).
pub fn oci_ref_name(s: &str) -> Result<Found, String> {
    if !s.contains(['/', ':', '@']) {
        let tag = s.parse::<Tag>().map_err(|e| format!("{s:?}: {e}"))?;
        return Ok(Found {
            repo: None,
            tag: Some(tag),
            pinned: false,
            digest: None,
        });
    }
    parse_reference(s, NameConvention::Oci)
}

/// Decides every image's names. `images` pairs each root manifest with the names the bundle
/// gives it (possibly none). Errors say what to pass to make the import possible.
pub fn assign(
    images: &[(Digest, Vec<Found>)],
    import_name: Option<&ImageName>,
) -> Result<Vec<Assigned>, String> {
    let mut out: Vec<Assigned> = Vec::new();
    let roots: Vec<&Digest> = dedup(images.iter().map(|(d, _)| d));
    if let Some(ImageName {
        repo,
        tag: Some(tag),
    }) = import_name
    {
        if roots.len() > 1 {
            return Err(format!(
                "--import-name {repo}:{tag} names one image, but the bundle holds {}; give \
                 --import-name {repo} to keep the bundle's tags",
                roots.len()
            ));
        }
        return Ok(roots
            .into_iter()
            .map(|root| Assigned {
                repo: repo.clone(),
                tag: Some(tag.clone()),
                root: root.clone(),
            })
            .collect());
    }
    for (root, names) in images {
        let mut names = names.clone();
        if names.is_empty() {
            names.push(Found {
                repo: None,
                tag: None,
                pinned: false,
                digest: None,
            });
        }
        for found in names {
            let repo = match (import_name, found.repo) {
                (Some(n), _) => n.repo.clone(),
                (None, Some(r)) => r,
                (None, None) => {
                    return Err(match found.tag {
                        Some(t) => format!(
                            "image {root} is named only by the tag {t:?}: give --import-name NAME"
                        ),
                        None => format!("image {root} has no name: give --import-name NAME[:TAG]"),
                    })
                }
            };
            let tag = match (found.tag, found.pinned) {
                (Some(t), _) => Some(t),
                (None, true) => None,
                (None, false) => Some(DEFAULT_TAG.parse().expect("a valid tag")),
            };
            add(
                &mut out,
                Assigned {
                    repo,
                    tag,
                    root: root.clone(),
                },
            )?;
        }
    }
    Ok(out)
}

fn add(out: &mut Vec<Assigned>, a: Assigned) -> Result<(), String> {
    if let Some(other) = out
        .iter()
        .find(|o| o.repo == a.repo && o.tag.is_some() && o.tag == a.tag)
    {
        if other.root != a.root {
            return Err(format!(
                "{}:{} names two images in this bundle: {} and {}",
                a.repo,
                a.tag.as_ref().map_or("", |t| t.as_str()),
                other.root,
                a.root
            ));
        }
        return Ok(());
    }
    if !out.contains(&a) {
        out.push(a);
    }
    Ok(())
}

fn dedup<'a>(it: impl Iterator<Item = &'a Digest>) -> Vec<&'a Digest> {
    let mut v: Vec<&Digest> = Vec::new();
    for d in it {
        if !v.contains(&d) {
            v.push(d);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(s: &str, o: NameConvention) -> (String, Option<String>) {
        let f = parse_reference(s, o).unwrap();
        (f.repo.unwrap().to_string(), f.tag.map(|t| t.to_string()))
    }

    #[test]
    fn hosts_are_dropped_and_docker_names_are_relative_to_docker_hub() {
        let cases = [
            (
                "127.0.0.1:5055/smoke/img:1",
                NameConvention::Docker,
                "smoke/img",
                Some("1"),
            ),
            (
                "docker.io/smoke/img:1",
                NameConvention::Docker,
                "smoke/img",
                Some("1"),
            ),
            (
                "alpine:3.20",
                NameConvention::Docker,
                "library/alpine",
                Some("3.20"),
            ),
            (
                "docker.io/library/alpine:3.20",
                NameConvention::Docker,
                "library/alpine",
                Some("3.20"),
            ),
            (
                "registry.lan/team/app",
                NameConvention::Docker,
                "team/app",
                None,
            ),
            ("localhost/app:2", NameConvention::Oci, "app", Some("2")),
            ("alpine:3.20", NameConvention::Oci, "alpine", Some("3.20")),
            (
                "docker.io/alpine:3.20",
                NameConvention::Oci,
                "library/alpine",
                Some("3.20"),
            ),
            ("edge/app:1.0", NameConvention::Oci, "edge/app", Some("1.0")),
        ];
        for (s, o, repo, tag) in cases {
            assert_eq!(
                named(s, o),
                (repo.to_owned(), tag.map(str::to_owned)),
                "{s}"
            );
        }
    }

    #[test]
    fn a_bare_ref_name_is_a_tag_and_a_digest_pins() {
        let f = oci_ref_name("1.0").unwrap();
        assert_eq!((f.repo, f.tag.unwrap().to_string()), (None, "1.0".into()));
        let d = Digest::sha256_of(b"x");
        let f = oci_ref_name(&format!("edge/app@{d}")).unwrap();
        assert!(f.pinned && f.tag.is_none());
        assert_eq!(f.digest, Some(d.clone()));
        let f = oci_ref_name(&format!("edge/app:1@{d}")).unwrap();
        assert!(!f.pinned && f.digest == Some(d));
        assert!(oci_ref_name("Bad Tag").is_err());
        assert!(parse_reference("UPPER/case:1", NameConvention::Oci).is_err());
    }

    fn found(s: &str) -> Found {
        oci_ref_name(s).unwrap()
    }

    #[test]
    fn import_name_sets_the_repository_or_the_whole_name() {
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let images = vec![(a.clone(), vec![found("1")]), (b.clone(), vec![])];
        let e = assign(&images, None).unwrap_err();
        assert!(
            e.contains("only by the tag \"1\": give --import-name"),
            "{e}"
        );
        let n = ImageName::parse("edge/app", "").unwrap();
        let got = assign(&images, Some(&n)).unwrap();
        let shown: Vec<String> = got
            .iter()
            .map(|g| format!("{}:{}", g.repo, g.tag.as_ref().unwrap()))
            .collect();
        assert_eq!(shown, vec!["edge/app:1", "edge/app:latest"]);
        let n = ImageName::parse("edge/app:9", "").unwrap();
        let e = assign(&images, Some(&n)).unwrap_err();
        assert!(e.contains("names one image, but the bundle holds 2"), "{e}");
        let got = assign(&images[..1], Some(&n)).unwrap();
        assert_eq!(got[0].tag.as_ref().unwrap().as_str(), "9");
    }

    #[test]
    fn one_name_for_two_images_is_refused() {
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let images = vec![
            (a.clone(), vec![found("x/y:1")]),
            (b, vec![found("x/y:1")]),
            (a, vec![found("x/y:1")]),
        ];
        let e = assign(&images, None).unwrap_err();
        assert!(e.contains("x/y:1 names two images"), "{e}");
    }
}
