//! Repository names, tags and manifest references, by the distribution spec's grammar.
//!
//! A [`RepoName`] or [`Tag`] that exists has been validated, so the rest of atoll never sees a
//! name with `..`, uppercase, empty segments or over-long text. Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted. The spec leaves room for `host:port/` in front of the name
/// within the 255 characters many clients allow; atoll keeps the name itself within 255.
pub const MAX_NAME_LEN: usize = 255;
/// The spec's tag grammar allows at most 128 characters.
pub const MAX_TAG_LEN: usize = 128;

/// A repository name: `component(/component)*`, each component
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// What a manifest URL names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a name, tag or reference is refused; the text is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Name(String),
    Tag(String),
    Digest(DigestError),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Name(m) | NameError::Tag(m) => f.write_str(m),
            NameError::Digest(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NameError {}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let shown = shorten(s);
        if s.is_empty() {
            return Err(NameError::Name("repository name is empty".into()));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::Name(format!(
                "repository name is {} characters long; the limit is {MAX_NAME_LEN}",
                s.len()
            )));
        }
        for component in s.split('/') {
            if let Err(why) = check_component(component) {
                return Err(NameError::Name(format!(
                    "invalid repository name {shown:?}: {why} (components are lowercase letters and \
                     digits, separated by '.', '_', '__' or dashes; joined by '/')"
                )));
            }
        }
        Ok(RepoName(s.to_owned()))
    }
}

fn check_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("a component must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &b[start..i] {
            b"." | b"_" | b"__" => {}
            run if run.iter().all(|&x| x == b'-') => {}
            run if run.iter().any(|x| !matches!(x, b'.' | b'_' | b'-')) => {
                return Err("only lowercase letters, digits and '.', '_', '-' are allowed")
            }
            _ => return Err("invalid separator"),
        }
    }
    Ok(())
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_');
        let rest_ok = b
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
            return Err(NameError::Tag(format!(
                "invalid tag {:?}: tags are 1 to {MAX_TAG_LEN} of [A-Za-z0-9_.-], not starting \
                 with '.' or '-'",
                shorten(s)
            )));
        }
        Ok(Tag(s.to_owned()))
    }
}

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Reference {
    type Err = NameError;

    /// A reference with a ':' is a digest; anything else must be a tag.
    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            s.parse().map(Reference::Digest).map_err(NameError::Digest)
        } else {
            s.parse().map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

macro_rules! string_newtype_fmt {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}
string_newtype_fmt!(RepoName);
string_newtype_fmt!(Tag);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_from_the_spec_grammar() {
        for ok in [
            "a",
            "library/alpine",
            "ghcr.io/org/img",
            "a/b/c/d/e/f",
            "my-app",
            "my--app",
            "my__app",
            "my_app.v2",
            "0",
            "foo/manifests/bar",
            "x/blobs/uploads",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn refuses_names_outside_the_grammar() {
        for bad in [
            "", "Upper", "a//b", "/a", "a/", "..", "a/../b", "a/./b", "-a", "a-", "a___b", "a._b",
            "a b", "a%2fb", "a\\b", "ä", "a:b",
        ] {
            assert!(
                bad.parse::<RepoName>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn refuses_names_over_255_characters() {
        let long = vec!["abcdefghij"; 24].join("/"); // 24*10 + 23 = 263
        let err = long.parse::<RepoName>().unwrap_err().to_string();
        assert!(err.contains("255"), "{err}");
        let just_fits = "a".repeat(255);
        assert!(just_fits.parse::<RepoName>().is_ok());
    }

    #[test]
    fn tags_follow_the_spec() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "md5:abc".parse::<Reference>(),
            Err(NameError::Digest(DigestError::UnsupportedAlgorithm(_)))
        ));
    }
}
