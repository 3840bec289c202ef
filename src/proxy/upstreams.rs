//! Which upstream registry serves a name, and under which names: the pull-through cache's
//! routing. Pure: configuration values in, decisions out.
//!
//! - `--upstream URL` is the default upstream: a name with no host prefix goes there as is
//!   (Docker's `registry-mirrors` sends `library/alpine` for Docker Hub's `alpine`).
//! - `--upstream HOST=URL` names an upstream. It is chosen by containerd's `?ns=HOST` query
//!   parameter, or by the name's first component (`/v2/ghcr.io/org/img/...`).
//! - Content cached from a named upstream is kept under `HOST/NAME`, whichever way it was asked
//!   for, so the two routes share one copy.

use crate::reference::RepoName;

/// One upstream registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The key it is chosen by (`ghcr.io`), or `""` for the default upstream.
    pub key: String,
    /// `https://ghcr.io`, without a trailing slash.
    pub url: String,
    /// Basic credentials for it (also sent to its token service).
    pub credentials: Option<(String, String)>,
}

impl Upstream {
    /// The host:port of its URL, as logged.
    pub fn host(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// A label for logs and metrics: the key, or the host for the default upstream.
    pub fn label(&self) -> &str {
        if self.key.is_empty() {
            self.host()
        } else {
            &self.key
        }
    }
}

/// Where a request for a name goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Index into `Upstreams::list`.
    pub upstream: usize,
    /// The name to ask the upstream for.
    pub remote: String,
    /// The repository the cached copy lives in here.
    pub local: RepoName,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstreams {
    pub list: Vec<Upstream>,
}

impl Upstreams {
    /// Parses `--upstream` values (`URL` or `HOST=URL`) and `--upstream-credentials` values
    /// (`HOST=USER:PASSWORD`, where `HOST` is a key, or the default upstream's host).
    pub fn parse(upstreams: &[String], credentials: &[String]) -> Result<Upstreams, String> {
        let mut list: Vec<Upstream> = Vec::new();
        for spec in upstreams {
            let (key, url) = match spec.split_once('=') {
                Some((k, u)) => (k.trim().to_ascii_lowercase(), u.trim()),
                None => (String::new(), spec.trim()),
            };
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "--upstream {spec:?}: the URL must start with https:// or http://"
                ));
            }
            let url = url.trim_end_matches('/');
            if url
                .split_once("://")
                .is_none_or(|(_, rest)| rest.is_empty() || rest.contains('/'))
            {
                return Err(format!(
                    "--upstream {spec:?}: give the registry's base URL, like https://ghcr.io"
                ));
            }
            if !key.is_empty() && !valid_key(&key) {
                return Err(format!(
                    "--upstream {spec:?}: {key:?} is not a registry host name"
                ));
            }
            if list.iter().any(|u| u.key == key) {
                let what = if key.is_empty() {
                    "the default upstream".to_owned()
                } else {
                    key.clone()
                };
                return Err(format!("--upstream: {what} is given twice"));
            }
            list.push(Upstream {
                key,
                url: url.to_owned(),
                credentials: None,
            });
        }
        for spec in credentials {
            let bad = || {
                format!(
                    "--upstream-credentials: {:?} is not HOST=USER:PASSWORD",
                    redact(spec)
                )
            };
            let (host, userpass) = spec.split_once('=').ok_or_else(bad)?;
            let (user, pass) = userpass.split_once(':').ok_or_else(bad)?;
            let host = host.trim().to_ascii_lowercase();
            let up = list
                .iter_mut()
                .find(|u| u.key == host || (u.key.is_empty() && u.host() == host))
                .ok_or_else(|| format!("--upstream-credentials: no --upstream for {host:?}"))?;
            up.credentials = Some((user.to_owned(), pass.to_owned()));
        }
        Ok(Upstreams { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Where a request for `name` (with containerd's `?ns=` if it sent one) goes, or `None`
    /// when no upstream serves it. Whether the name is a local repository is for the caller
    /// to check: local names are never proxied.
    pub fn route(&self, name: &RepoName, ns: Option<&str>) -> Option<Route> {
        let named = |key: &str| {
            self.list
                .iter()
                .position(|u| !u.key.is_empty() && u.key == key)
        };
        if let Some(ns) = ns.map(str::to_ascii_lowercase) {
            if let Some(i) = named(&ns) {
                let local = format!("{ns}/{name}").parse().ok()?;
                return Some(Route {
                    upstream: i,
                    remote: name.to_string(),
                    local,
                });
            }
            // containerd may name the default upstream's registry (ns=docker.io for Docker Hub,
            // whose API host is registry-1.docker.io).
            let hub = |h: &str| h == "docker.io" || h.ends_with(".docker.io");
            return self
                .default_index()
                .filter(|&i| {
                    let host = self.list[i].host();
                    host == ns || (hub(&ns) && hub(host))
                })
                .map(|i| Route {
                    upstream: i,
                    remote: name.to_string(),
                    local: name.clone(),
                });
        }
        if let Some((first, rest)) = name.as_str().split_once('/') {
            if let Some(i) = named(first) {
                return Some(Route {
                    upstream: i,
                    remote: rest.to_owned(),
                    local: name.clone(),
                });
            }
        }
        self.default_index().map(|i| Route {
            upstream: i,
            remote: name.to_string(),
            local: name.clone(),
        })
    }

    fn default_index(&self) -> Option<usize> {
        self.list.iter().position(|u| u.key.is_empty())
    }
}

/// A registry host (`ghcr.io`, `registry.lan:5000`) as a key.
fn valid_key(k: &str) -> bool {
    let (host, port) = k.split_once(':').unwrap_or((k, "0"));
    port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A credentials value with the password hidden, for error messages.
fn redact(spec: &str) -> String {
    match spec.split_once(':') {
        Some((before, _)) => format!("{before}:***"),
        None => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(specs: &[&str]) -> Upstreams {
        Upstreams::parse(
            &specs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &[],
        )
        .unwrap()
    }

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn names_go_to_the_default_or_a_named_upstream() {
        let u = ups(&["https://registry-1.docker.io", "ghcr.io=https://ghcr.io/"]);
        assert_eq!(u.list[1].url, "https://ghcr.io");
        let r = u.route(&name("library/alpine"), None).unwrap();
        assert_eq!(
            (r.upstream, r.remote.as_str(), r.local.as_str()),
            (0, "library/alpine", "library/alpine")
        );
        let r = u.route(&name("ghcr.io/org/img"), None).unwrap();
        assert_eq!(
            (r.upstream, r.remote.as_str(), r.local.as_str()),
            (1, "org/img", "ghcr.io/org/img")
        );
        // containerd's ns parameter: the same local name as the prefix route.
        let r = u.route(&name("org/img"), Some("ghcr.io")).unwrap();
        assert_eq!(
            (r.upstream, r.remote.as_str(), r.local.as_str()),
            (1, "org/img", "ghcr.io/org/img")
        );
        let r = u.route(&name("library/alpine"), Some("docker.io")).unwrap();
        assert_eq!((r.upstream, r.local.as_str()), (0, "library/alpine"));
        assert_eq!(
            u.route(&name("x/y"), Some("quay.io")),
            None,
            "an unknown ns is not guessed"
        );
    }

    #[test]
    fn without_a_default_only_named_upstreams_serve() {
        let u = ups(&["ghcr.io=https://ghcr.io"]);
        assert_eq!(u.route(&name("library/alpine"), None), None);
        assert!(u.route(&name("ghcr.io/a/b"), None).is_some());
        assert_eq!(Upstreams::default().route(&name("a"), None), None);
    }

    #[test]
    fn credentials_attach_to_their_upstream() {
        let u = Upstreams::parse(
            &[
                "https://registry-1.docker.io".into(),
                "ghcr.io=https://ghcr.io".into(),
            ],
            &[
                "ghcr.io=bot:s3:cret".into(),
                "registry-1.docker.io=me:pw".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            u.list[1].credentials,
            Some(("bot".into(), "s3:cret".into()))
        );
        assert_eq!(u.list[0].credentials, Some(("me".into(), "pw".into())));
    }

    #[test]
    fn bad_values_are_refused_without_showing_passwords() {
        for (specs, why) in [
            (vec!["ftp://x"], "https://"),
            (vec!["https://x/v2/"], "base URL"),
            (vec!["bad host=https://x"], "not a registry host"),
            (vec!["https://a", "https://b"], "given twice"),
        ] {
            let e = Upstreams::parse(
                &specs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &[],
            )
            .unwrap_err();
            assert!(e.contains(why), "{specs:?}: {e}");
        }
        let e = Upstreams::parse(
            &["https://a".into()],
            &["a=user:topsecret".into(), "b=u:p".into()],
        )
        .unwrap_err();
        assert!(e.contains("no --upstream for \"b\""), "{e}");
        let e =
            Upstreams::parse(&["https://a".into()], &["nonsense:topsecret".into()]).unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
    }
}
