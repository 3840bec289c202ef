//! Bearer tokens that atoll issues and checks itself, for the token flow Docker clients need
//! when anonymous pulls are allowed (a Basic challenge makes docker refuse to pull without a
//! login; a Bearer challenge lets it fetch an anonymous token).
//!
//! A token is `<expiry>.<user hex>.<mac>`, the MAC a BLAKE3 keyed hash under a key made at
//! startup: nothing to store, and a restart simply makes clients fetch a new token. Pure apart
//! from the key handed in.

/// Whom a valid token was issued to: `None` for an anonymous (pull-only) token.
pub type Subject = Option<String>;

pub struct Tokens {
    key: [u8; 32],
}

/// Seconds a token lives; clients fetch another when it runs out.
pub const TOKEN_TTL: i64 = 300;

impl Tokens {
    pub fn new(key: [u8; 32]) -> Tokens {
        Tokens { key }
    }

    /// A token for `user` (or anonymous), valid until `now + TOKEN_TTL`.
    pub fn issue(&self, user: Option<&str>, now: i64) -> String {
        let body = format!("{}.{}", now + TOKEN_TTL, hex(user.unwrap_or("").as_bytes()));
        let mac = blake3::keyed_hash(&self.key, body.as_bytes());
        format!("{body}.{}", mac.to_hex())
    }

    /// The subject of a token that is genuine and unexpired.
    pub fn verify(&self, token: &str, now: i64) -> Option<Subject> {
        let (body, mac) = token.rsplit_once('.')?;
        let given = blake3::Hash::from_hex(mac).ok()?;
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(&self.key, body.as_bytes()) != given {
            return None;
        }
        let (expiry, user) = body.split_once('.')?;
        if expiry.parse::<i64>().ok()? <= now {
            return None;
        }
        let user = String::from_utf8(unhex(user)?).ok()?;
        Some(if user.is_empty() { None } else { Some(user) })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_subject_until_they_expire() {
        let t = Tokens::new([7; 32]);
        let alice = t.issue(Some("alice.smith"), 1000);
        assert_eq!(t.verify(&alice, 1000), Some(Some("alice.smith".into())));
        assert_eq!(t.verify(&alice, 1000 + TOKEN_TTL), None, "expired");
        let anon = t.issue(None, 1000);
        assert_eq!(t.verify(&anon, 1001), Some(None));
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let t = Tokens::new([7; 32]);
        let other = Tokens::new([8; 32]);
        let token = t.issue(Some("alice"), 1000);
        assert_eq!(other.verify(&token, 1000), None, "another key");
        // Change the user or the expiry and keep the MAC.
        let (body, mac) = token.rsplit_once('.').unwrap();
        let forged = format!("{}.{mac}", body.replace(&hex(b"alice"), &hex(b"admin")));
        assert_eq!(t.verify(&forged, 1000), None);
        let later = format!(
            "{}.{mac}",
            body.replacen(&(1000 + TOKEN_TTL).to_string(), "9999999999", 1)
        );
        assert_eq!(t.verify(&later, 1000), None);
        for junk in ["", ".", "a.b.c", "1.2", "x.y.zz"] {
            assert_eq!(t.verify(junk, 1000), None, "{junk:?}");
        }
    }
}
