//! `WWW-Authenticate` challenges from upstream registries (RFC 7235): the scheme and its
//! parameters, e.g. `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
//! scope="repository:library/alpine:pull"`. Pure.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `bearer`, `basic`.
    pub scheme: String,
    /// Parameter names lowercased.
    pub params: HashMap<String, String>,
}

/// Parses the first challenge of a `WWW-Authenticate` value.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let mut params = HashMap::new();
    let mut s = rest;
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            break;
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        if key.is_empty() {
            return None;
        }
        if key.contains([' ', ',']) {
            // The start of a second challenge: this one is complete.
            break;
        }
        s = s[eq + 1..].trim_start();
        let value = if let Some(quoted) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            s = &quoted[end?..];
            v
        } else {
            let end = s.find(',').unwrap_or(s.len());
            let v = s[..end].trim().to_owned();
            s = &s[end..];
            v
        };
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_and_basic_challenges() {
        let c = parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/alpine:pull");
        let b = parse(r#"Basic realm="atoll""#).unwrap();
        assert_eq!(
            (b.scheme.as_str(), b.params["realm"].as_str()),
            ("basic", "atoll")
        );
    }

    #[test]
    fn tolerates_spacing_tokens_and_escapes() {
        let c =
            parse(r#"bearer  realm = "https://a/t" , service=reg, scope="x:\"y\":pull""#).unwrap();
        assert_eq!(c.params["realm"], "https://a/t");
        assert_eq!(c.params["service"], "reg");
        assert_eq!(c.params["scope"], r#"x:"y":pull"#);
    }

    #[test]
    fn garbage_is_none() {
        for bad in ["", "\"quoted\"", "Bearer realm=\"unterminated", "Bearer =x"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
