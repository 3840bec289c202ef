//! Who is asking, and may they? Logins from an htpasswd file (bcrypt) and/or one user from
//! `ATOLL_USERNAME`/`ATOLL_PASSWORD`, checked from `Authorization: Basic` or from a Bearer
//! token atoll issued (`/token`); what anonymous clients may do (`--anonymous-pull`); and
//! failed-login throttling.
//!
//! bcrypt is slow on purpose, and Docker sends credentials with every request, so a verified
//! `user:password` is remembered under a BLAKE3 keyed hash until the user file changes: one
//! bcrypt per login, not per request. Password checks are constant-time (bcrypt's compare,
//! BLAKE3 hash equality), an unknown user costs a bcrypt like a known one, and credentials
//! never reach a log line.

pub mod htpasswd;
pub mod limiter;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use base64::Engine as _;
use log::{info, warn};

use crate::error::{Error, Result};
use limiter::{Limiter, Verdict};
use token::Tokens;

pub use token::TOKEN_TTL;

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

impl Identity {
    /// For the access log.
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "-",
            Identity::User(u) => u,
        }
    }
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Health checks and the token endpoint: anyone.
    Open,
    /// Pulls, listings: anyone with `--anonymous-pull`, else a login.
    Read,
    /// Pushes and deletes: always a login.
    Write,
}

/// Where logins come from.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub htpasswd: Option<PathBuf>,
    /// `ATOLL_USERNAME` and `ATOLL_PASSWORD`.
    pub single_user: Option<(String, String)>,
    pub anonymous_pull: bool,
}

/// Why credentials were not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong or unreadable credentials: 401, counted as a failed login.
    BadCredentials,
    /// Too many failures from this address: 429.
    Throttled(std::time::Duration),
}

/// The pure access rule: may `who` do what needs `access`?
pub fn allowed(anonymous_pull: bool, who: &Identity, access: Access) -> bool {
    match (access, who) {
        (Access::Open, _) | (_, Identity::User(_)) => true,
        (Access::Read, Identity::Anonymous) => anonymous_pull,
        (Access::Write, Identity::Anonymous) => false,
    }
}

/// A file's modified time and length, to notice that it changed.
type Stamp = Option<(SystemTime, u64)>;

struct Users {
    bcrypt: HashMap<String, String>,
    /// The file as last loaded.
    stamp: Stamp,
}

pub struct Auth {
    htpasswd: Option<PathBuf>,
    /// The `ATOLL_USERNAME` user: name, and the keyed hash of `name\0password`.
    single: Option<(String, blake3::Hash)>,
    pub anonymous_pull: bool,
    users: RwLock<Users>,
    /// A bcrypt hash that no password matches, checked for unknown users so that they cost
    /// the same time as known ones.
    decoy: String,
    verified: Mutex<HashMap<[u8; 32], String>>,
    key: [u8; 32],
    limiter: Mutex<Limiter>,
    tokens: Tokens,
}

/// Verified credentials remembered at most; the memory is cleared when full.
const MAX_VERIFIED: usize = 4096;

impl Auth {
    /// Loads the login sources; `None` when none is configured (an open registry). Tokens are
    /// signed with `token_key` (`Registry::token_key`: shared by a cluster's nodes).
    pub fn load(config: &AuthConfig, token_key: [u8; 32]) -> Result<Option<Auth>> {
        if config.htpasswd.is_none() && config.single_user.is_none() {
            return Ok(None);
        }
        let key = crate::ids::random_key();
        let (bcrypt, stamp) = match &config.htpasswd {
            Some(path) => read_users(path)?,
            None => (HashMap::new(), None),
        };
        let cost = bcrypt
            .values()
            .next()
            .and_then(|h| h.get(4..6))
            .and_then(|c| c.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash(crate::ids::new_id(), cost)
            .map_err(|e| Error::Config(format!("preparing the login check: {e}")))?;
        let single = config
            .single_user
            .as_ref()
            .map(|(u, p)| (u.clone(), credential_key(&key, u, p)));
        Ok(Some(Auth {
            htpasswd: config.htpasswd.clone(),
            single,
            anonymous_pull: config.anonymous_pull,
            users: RwLock::new(Users { bcrypt, stamp }),
            decoy,
            verified: Mutex::new(HashMap::new()),
            key,
            limiter: Mutex::new(Limiter::default()),
            tokens: Tokens::new(token_key),
        }))
    }

    /// Number of users from the htpasswd file (plus the single user, if any).
    pub fn user_count(&self) -> usize {
        self.read_users().bcrypt.len() + usize::from(self.single.is_some())
    }

    /// Re-reads the htpasswd file if it changed since it was loaded (or if `force`). A file that
    /// no longer parses keeps the users loaded before, and the error is returned to be logged.
    pub fn reload(&self, force: bool) -> Result<bool> {
        let Some(path) = &self.htpasswd else {
            return Ok(false);
        };
        let now_stamp = file_stamp(path);
        if !force && now_stamp.is_some() && now_stamp == self.read_users().stamp {
            return Ok(false);
        }
        let (bcrypt, stamp) = read_users(path)?;
        let n = bcrypt.len();
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = Users { bcrypt, stamp };
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        info!("reloaded {}: {n} users", path.display());
        Ok(true)
    }

    /// Is this address blocked from trying?
    pub fn throttled(&self, ip: IpAddr, now_ms: u64) -> Option<std::time::Duration> {
        match self.limiter().check(ip, now_ms) {
            Verdict::Block(d) => Some(d),
            _ => None,
        }
    }

    /// Identifies the sender of an `Authorization` header. Blocking (a bcrypt check on a
    /// first login): run it off the executor, unless [`Auth::cached`] already answered.
    pub fn authenticate(&self, header: Option<&str>, now: i64) -> Result<Identity, Refusal> {
        let Some(header) = header.map(str::trim) else {
            return Ok(Identity::Anonymous);
        };
        if let Some(token) = strip_scheme(header, "Bearer") {
            return match self.tokens.verify(token.trim(), now) {
                Some(None) => Ok(Identity::Anonymous),
                // A token outlives nothing: its user must still be a user.
                Some(Some(user)) if self.has_user(&user) => Ok(Identity::User(user)),
                _ => Err(Refusal::BadCredentials),
            };
        }
        let (user, password) = parse_basic(header).ok_or(Refusal::BadCredentials)?;
        if user.is_empty() && password.is_empty() {
            return Ok(Identity::Anonymous);
        }
        let ck = credential_key(&self.key, &user, &password);
        if let Some(u) = self.verified().get(ck.as_bytes()) {
            return Ok(Identity::User(u.clone()));
        }
        if self
            .single
            .as_ref()
            .is_some_and(|(_, single)| *single == ck)
        {
            return Ok(self.remember(ck, user));
        }
        let hash = self.read_users().bcrypt.get(&user).cloned();
        let ok = match &hash {
            Some(h) => bcrypt::verify(&password, h).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(&password, &self.decoy);
                false
            }
        };
        if ok {
            Ok(self.remember(ck, user))
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    /// The identity of a header whose credentials were verified before (no bcrypt), if any.
    pub fn cached(&self, header: Option<&str>) -> Option<Identity> {
        let header = header?;
        if strip_scheme(header.trim(), "Bearer").is_some() {
            return None;
        }
        let (user, password) = parse_basic(header.trim())?;
        let ck = credential_key(&self.key, &user, &password);
        self.verified()
            .get(ck.as_bytes())
            .cloned()
            .map(Identity::User)
    }

    /// Records the outcome of a login attempt from `ip`; for a failure, how to answer it.
    pub fn record(&self, ip: IpAddr, ok: bool, now_ms: u64) -> Verdict {
        let mut l = self.limiter();
        if ok {
            l.succeeded(ip);
            Verdict::Allow
        } else {
            let v = l.failed(ip, now_ms);
            if let Verdict::Block(_) = v {
                warn!("too many failed logins from {ip}: refusing it for a while");
            }
            v
        }
    }

    /// A token for `who`, for the `/token` endpoint.
    pub fn issue_token(&self, who: &Identity, now: i64) -> String {
        match who {
            Identity::Anonymous => self.tokens.issue(None, now),
            Identity::User(u) => self.tokens.issue(Some(u), now),
        }
    }

    fn has_user(&self, user: &str) -> bool {
        self.read_users().bcrypt.contains_key(user)
            || self.single.as_ref().is_some_and(|(name, _)| name == user)
    }

    fn remember(&self, ck: blake3::Hash, user: String) -> Identity {
        let mut v = self.verified();
        if v.len() >= MAX_VERIFIED {
            v.clear();
        }
        v.insert(*ck.as_bytes(), user.clone());
        Identity::User(user)
    }

    fn read_users(&self) -> std::sync::RwLockReadGuard<'_, Users> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], String>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Cost of the bcrypt hashes `--hash-password` makes (htpasswd -B's default is 5; 10 is the
/// usual recommendation, tens of milliseconds per check, paid once per login thanks to the
/// cache).
pub const HASH_COST: u32 = 10;

/// `atoll --hash-password USER`: reads a password (first line of `input`) and prints the
/// htpasswd line for it, as `htpasswd -nB` would, for hosts without Apache's tools.
pub fn hash_password_line(user: &str, mut input: impl std::io::BufRead) -> Result<()> {
    let mut password = String::new();
    input
        .read_line(&mut password)
        .map_err(|e| Error::io("reading the password from standard input", e))?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Error::Config(
            "--hash-password: the password on standard input is empty".into(),
        ));
    }
    let hash = bcrypt::hash_with_result(password, HASH_COST)
        .map_err(|e| Error::Config(format!("--hash-password: {e}")))?
        .format_for_version(bcrypt::Version::TwoY);
    println!("{user}:{hash}");
    Ok(())
}

/// Reads and parses an htpasswd file; warnings are logged, errors name the file.
fn read_users(path: &Path) -> Result<(HashMap<String, String>, Stamp)> {
    let stamp = file_stamp(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("--htpasswd {}: cannot read: {e}", path.display())))?;
    let parsed = htpasswd::parse(&text)
        .map_err(|e| Error::Config(format!("--htpasswd {}: {e}", path.display())))?;
    for w in &parsed.warnings {
        warn!("--htpasswd {}: {w}", path.display());
    }
    Ok((parsed.users, stamp))
}

fn file_stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn credential_key(key: &[u8; 32], user: &str, password: &str) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(user.as_bytes());
    h.update(&[0]);
    h.update(password.as_bytes());
    h.finalize()
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// `Basic base64(user:password)` -> (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = strip_scheme(header, "Basic")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_rule() {
        let alice = Identity::User("alice".into());
        for anon_pull in [false, true] {
            assert!(allowed(anon_pull, &alice, Access::Write));
            assert!(allowed(anon_pull, &alice, Access::Read));
            assert!(allowed(anon_pull, &Identity::Anonymous, Access::Open));
            assert!(!allowed(anon_pull, &Identity::Anonymous, Access::Write));
        }
        assert!(allowed(true, &Identity::Anonymous, Access::Read));
        assert!(!allowed(false, &Identity::Anonymous, Access::Read));
    }

    #[test]
    fn basic_headers_decode() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjN0"),
            Some(("alice".into(), "s3cr3t".into()))
        );
        assert_eq!(
            parse_basic("basic YWxpY2U6YTpi"),
            Some(("alice".into(), "a:b".into()))
        );
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), None);
    }

    fn auth_with(htpasswd: &str) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, htpasswd).unwrap();
        let config = AuthConfig {
            htpasswd: Some(path),
            single_user: Some(("ci".into(), "env-secret".into())),
            anonymous_pull: false,
        };
        (
            Auth::load(&config, crate::ids::random_key())
                .unwrap()
                .unwrap(),
            dir,
        )
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn checks_bcrypt_users_the_env_user_and_tokens() {
        let hash = bcrypt::hash("s3cr3t", 4).unwrap();
        let (auth, _dir) = auth_with(&format!("alice:{hash}\n"));
        let h = basic("alice", "s3cr3t");
        assert_eq!(auth.cached(Some(&h)), None);
        assert_eq!(
            auth.authenticate(Some(&h), 0),
            Ok(Identity::User("alice".into()))
        );
        assert_eq!(
            auth.cached(Some(&h)),
            Some(Identity::User("alice".into())),
            "remembered"
        );
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "wrong")), 0),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("mallory", "x")), 0),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("ci", "env-secret")), 0),
            Ok(Identity::User("ci".into()))
        );
        assert_eq!(auth.authenticate(None, 0), Ok(Identity::Anonymous));
        assert_eq!(
            auth.authenticate(Some("Digest x"), 0),
            Err(Refusal::BadCredentials)
        );
        let t = auth.issue_token(&Identity::User("alice".into()), 100);
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {t}")), 100),
            Ok(Identity::User("alice".into()))
        );
        assert_eq!(
            auth.authenticate(Some("Bearer forged"), 100),
            Err(Refusal::BadCredentials)
        );
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_users() {
        let hash = bcrypt::hash("one", 4).unwrap();
        let (auth, dir) = auth_with(&format!("alice:{hash}\n"));
        let path = dir.path().join("htpasswd");
        assert!(auth.authenticate(Some(&basic("alice", "one")), 0).is_ok());
        let hash2 = bcrypt::hash("two", 4).unwrap();
        std::fs::write(&path, format!("alice:{hash2}\nbob:{hash2}\n")).unwrap();
        assert!(auth.reload(true).unwrap());
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "one")), 0),
            Err(Refusal::BadCredentials),
            "cache cleared"
        );
        assert!(auth.authenticate(Some(&basic("bob", "two")), 0).is_ok());
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(auth.reload(true).is_err());
        assert!(
            auth.authenticate(Some(&basic("bob", "two")), 0).is_ok(),
            "old users kept"
        );
    }
}
