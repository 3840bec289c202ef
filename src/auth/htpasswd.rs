//! The htpasswd format, as `htpasswd -B` writes it: one `user:hash` per line, `#` comments.
//!
//! Only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`) are accepted: the others Apache supports (MD5
//! `$apr1$`, `{SHA}`, crypt, plain text) are too weak to protect a registry, so their lines are
//! skipped with a warning that names the line. A line atoll cannot read at all, or a file with
//! no usable user, is an error. Pure: parses text.

use std::collections::HashMap;

/// What a file held: the usable users, and a warning for each line that was skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub users: HashMap<String, String>,
    pub warnings: Vec<String>,
}

/// Parses htpasswd text. `Err` names the line that makes the file unusable.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {n}: expected user:hash"));
        };
        if user.is_empty() || user.chars().any(char::is_whitespace) {
            return Err(format!("line {n}: the user name is empty or has spaces"));
        }
        let hash = hash.trim();
        if !is_bcrypt(hash) {
            parsed.warnings.push(format!(
                "line {n} (user {user:?}): {} hashes are not accepted, only bcrypt: \
                 recreate it with htpasswd -B",
                hash_kind(hash)
            ));
            continue;
        }
        if parsed
            .users
            .insert(user.to_owned(), hash.to_owned())
            .is_some()
        {
            return Err(format!("line {n}: user {user:?} appears twice"));
        }
    }
    if parsed.users.is_empty() {
        return Err("no bcrypt users in the file (create them with htpasswd -B)".into());
    }
    Ok(parsed)
}

/// `$2y$NN$` + 53 characters of bcrypt's base64.
fn is_bcrypt(hash: &str) -> bool {
    let Some(rest) = ["$2y$", "$2b$", "$2a$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
    else {
        return false;
    };
    let Some((cost, body)) = rest.split_once('$') else {
        return false;
    };
    let cost_ok = cost.len() == 2 && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c));
    let body_ok = body.len() == 53
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    cost_ok && body_ok
}

fn hash_kind(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$2") {
        "malformed bcrypt"
    } else if hash.starts_with('$') {
        "crypt"
    } else {
        "plain-text or crypt"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // htpasswd -nbB alice secret
    const ALICE: &str = "alice:$2y$05$Cf1qbzF7Lg1J5c0U9b9Z5uYfTzHq8Xq3Nn6QYk8N0mXy8J0sL2g6S";

    #[test]
    fn reads_bcrypt_users_and_skips_comments() {
        let p = parse(&format!("# users\n\n{ALICE}\r\nbob:$2b$10$abcdefghijklmnopqrstu/ABCDEFGHIJKLMNOPQRSTUVWXYZ01234\n")).unwrap();
        assert_eq!(p.users.len(), 2);
        assert!(p.users["alice"].starts_with("$2y$05$"));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn weak_hashes_are_skipped_with_a_warning_naming_the_line() {
        let text = format!(
            "carol:$apr1$abc$def\n{ALICE}\ndave:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\nerin:plain\n"
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.users.keys().collect::<Vec<_>>(), vec!["alice"]);
        assert_eq!(p.warnings.len(), 3);
        assert!(
            p.warnings[0].starts_with("line 1 (user \"carol\"): MD5"),
            "{}",
            p.warnings[0]
        );
        assert!(p.warnings[1].starts_with("line 3"), "{}", p.warnings[1]);
    }

    #[test]
    fn unusable_files_are_errors_naming_the_line() {
        assert_eq!(
            parse("no colon here\n").unwrap_err(),
            "line 1: expected user:hash"
        );
        assert!(parse(&format!("{ALICE}\n{ALICE}\n"))
            .unwrap_err()
            .starts_with("line 2"));
        assert!(parse(":$2y$05$x\n").unwrap_err().starts_with("line 1"));
        assert!(parse("").unwrap_err().contains("no bcrypt users"));
        assert!(parse("carol:$apr1$abc$def\n")
            .unwrap_err()
            .contains("no bcrypt users"));
        assert!(parse("x:$2y$05$tooshort\n")
            .unwrap_err()
            .contains("no bcrypt users"));
    }
}
