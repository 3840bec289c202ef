//! Where the object store is and how to sign for it, checked before atoll starts: `s3://BUCKET
//! [/PREFIX]`, the endpoint, the region, path-style or virtual-host addressing, and the keys
//! (`ATOLL_S3_ACCESS_KEY_ID` / `ATOLL_S3_SECRET_ACCESS_KEY`, else the standard `AWS_*` pair,
//! else a credentials file). Pure: the environment is passed in as a function.

use std::fmt;
use std::path::Path;

use http_types::Url;

/// How the bucket is named in a request's URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `https://endpoint/BUCKET/key`: works with any endpoint, an IP address included.
    Path,
    /// `https://BUCKET.endpoint/key`: what AWS prefers; needs DNS for the bucket's name.
    VirtualHost,
}

/// The object store's settings, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Prepended to every key; empty, or ending in `/`.
    pub prefix: String,
    pub endpoint: Url,
    pub region: String,
    pub addressing: Addressing,
    pub access_key: String,
    pub secret_key: String,
}

impl fmt::Debug for S3Config {
    /// Never the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.prefix.trim_end_matches('/');
        let slash = if prefix.is_empty() { "" } else { "/" };
        write!(
            f,
            "s3://{}{slash}{prefix} at {}",
            self.bucket,
            self.endpoint.as_str().trim_end_matches('/')
        )
    }
}

/// The flags as given.
#[derive(Clone, Debug, Default)]
pub struct S3Flags {
    /// `--blob-store`.
    pub store: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `path` or `virtual`.
    pub addressing: Option<String>,
    pub credentials_file: Option<String>,
}

impl S3Config {
    /// Checks the flags and finds the keys. Every error names the flag it is about.
    pub fn parse(
        flags: &S3Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Config, String> {
        let rest = flags.store.strip_prefix("s3://").ok_or_else(|| {
            format!(
                "--blob-store {:?}: expected disk or s3://BUCKET[/PREFIX]",
                flags.store
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err(format!(
                "--blob-store {:?}: {bucket:?} is not a bucket name (3-63 characters: a-z, 0-9, \
                 '.' and '-', starting and ending with a letter or digit)",
                flags.store
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!(
                "--blob-store {:?}: the prefix {prefix:?} has an empty, '.' or '..' part",
                flags.store
            ));
        }
        let endpoint = flags.endpoint.as_deref().ok_or_else(|| {
            "--s3-endpoint is needed with an s3:// --blob-store (e.g. https://s3.eu-west-1.amazonaws.com, http://127.0.0.1:3900)".to_owned()
        })?;
        let endpoint = Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .filter(|u| u.query().is_none() && u.username().is_empty())
            .ok_or_else(|| {
                format!(
                    "--s3-endpoint {endpoint:?}: expected http(s)://HOST[:PORT], no query or user"
                )
            })?;
        let addressing = match flags.addressing.as_deref() {
            None | Some("path") => Addressing::Path,
            Some("virtual") => Addressing::VirtualHost,
            Some(other) => {
                return Err(format!(
                    "--s3-addressing {other:?}: expected path or virtual"
                ))
            }
        };
        let region = flags
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "--s3-region {region:?}: expected a region name like us-east-1"
            ));
        }
        let (access_key, secret_key) = credentials(flags, env)?;
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            endpoint,
            region,
            addressing,
            access_key,
            secret_key,
        })
    }
}

/// The access key pair: `ATOLL_S3_*`, else `AWS_*`, else `--s3-credentials-file` (the AWS
/// shared credentials format: `aws_access_key_id = ...` and `aws_secret_access_key = ...`).
fn credentials(
    flags: &S3Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String), String> {
    for (id, secret) in [
        ("ATOLL_S3_ACCESS_KEY_ID", "ATOLL_S3_SECRET_ACCESS_KEY"),
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ] {
        match (
            env(id).filter(|v| !v.is_empty()),
            env(secret).filter(|v| !v.is_empty()),
        ) {
            (Some(i), Some(s)) => return Ok((i, s)),
            (None, None) => {}
            _ => return Err(format!("{id} and {secret} must be set together")),
        }
    }
    let Some(path) = &flags.credentials_file else {
        return Err(
            "the object store needs keys: set ATOLL_S3_ACCESS_KEY_ID and \
                    ATOLL_S3_SECRET_ACCESS_KEY, or give --s3-credentials-file"
                .to_owned(),
        );
    };
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|e| format!("--s3-credentials-file {path}: cannot read: {e}"))?;
    credentials_file(&text).map_err(|e| format!("--s3-credentials-file {path}: {e}"))
}

/// The first `aws_access_key_id` and `aws_secret_access_key` of a credentials file.
fn credentials_file(text: &str) -> Result<(String, String), String> {
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match (value("aws_access_key_id"), value("aws_secret_access_key")) {
        (Some(i), Some(s)) => Ok((i, s)),
        _ => Err("expected aws_access_key_id = ... and aws_secret_access_key = ... lines".into()),
    }
}

/// S3's bucket naming rules (the strict, current ones).
fn valid_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(store: &str) -> S3Flags {
        S3Flags {
            store: store.into(),
            endpoint: Some("http://127.0.0.1:3900".into()),
            ..S3Flags::default()
        }
    }

    fn keys(name: &str) -> Option<String> {
        match name {
            "ATOLL_S3_ACCESS_KEY_ID" => Some("GK1".into()),
            "ATOLL_S3_SECRET_ACCESS_KEY" => Some("s3cret".into()),
            _ => None,
        }
    }

    #[test]
    fn a_store_url_gives_bucket_and_prefix_and_never_shows_the_secret() {
        let c = S3Config::parse(&flags("s3://images/site-a/"), &keys).unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str()),
            ("images", "site-a/")
        );
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.addressing, Addressing::Path);
        assert_eq!(c.to_string(), "s3://images/site-a at http://127.0.0.1:3900");
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = S3Config::parse(&flags("s3://images"), &keys).unwrap();
        assert_eq!(c.prefix, "");
    }

    #[test]
    fn each_bad_setting_is_named() {
        let no_keys = |_: &str| None;
        for (f, env, says) in [
            (
                flags("file:///x"),
                &keys as &dyn Fn(&str) -> Option<String>,
                "--blob-store",
            ),
            (flags("s3://Bad_Bucket"), &keys, "not a bucket name"),
            (flags("s3://ab"), &keys, "not a bucket name"),
            (flags("s3://images/a/../b"), &keys, "'..'"),
            (
                S3Flags {
                    endpoint: None,
                    ..flags("s3://images")
                },
                &keys,
                "--s3-endpoint is needed",
            ),
            (
                S3Flags {
                    endpoint: Some("ftp://x".into()),
                    ..flags("s3://images")
                },
                &keys,
                "--s3-endpoint \"ftp://x\"",
            ),
            (
                S3Flags {
                    addressing: Some("dns".into()),
                    ..flags("s3://images")
                },
                &keys,
                "--s3-addressing",
            ),
            (
                S3Flags {
                    region: Some("eu west".into()),
                    ..flags("s3://images")
                },
                &keys,
                "--s3-region",
            ),
            (flags("s3://images"), &no_keys, "needs keys"),
            (
                S3Flags {
                    credentials_file: Some("/nonexistent/creds".into()),
                    ..flags("s3://images")
                },
                &no_keys,
                "--s3-credentials-file /nonexistent/creds: cannot read",
            ),
        ] {
            let e = S3Config::parse(&f, env).unwrap_err();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
        let half = |n: &str| (n == "AWS_ACCESS_KEY_ID").then(|| "x".to_owned());
        let e = S3Config::parse(&flags("s3://images"), &half).unwrap_err();
        assert!(e.contains("must be set together"), "{e}");
    }

    #[test]
    fn keys_come_from_atoll_then_aws_then_the_file() {
        let aws = |n: &str| match n {
            "AWS_ACCESS_KEY_ID" => Some("A".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("B".to_owned()),
            _ => None,
        };
        let both = |n: &str| keys(n).or_else(|| aws(n));
        let c = S3Config::parse(&flags("s3://images"), &both).unwrap();
        assert_eq!(c.access_key, "GK1");
        let c = S3Config::parse(&flags("s3://images"), &aws).unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("A", "B"));
        assert_eq!(
            credentials_file("[default]\naws_access_key_id = K\naws_secret_access_key=S\n"),
            Ok(("K".into(), "S".into()))
        );
        assert!(credentials_file("[default]\naws_access_key_id = K\n").is_err());
    }
}
