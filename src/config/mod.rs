//! The validated configuration: command-line flags, else `ATOLL_*` environment variables, else
//! the embedded defaults. Everything is checked here, before any socket is opened, and a
//! problem is one line that names the flag (and the file, for files). Pure: the environment
//! is passed in as a function.

use std::net::SocketAddr;
use std::path::PathBuf;

use log::LevelFilter;

use crate::auth::AuthConfig;
use crate::cli::Args;
use crate::error::{Error, Result};
use crate::http::limits::Limits;
use crate::index::{IndexConfig, PgConfig};
use crate::proxy::{ProxyConfig, Upstreams};
use crate::s3::{S3Config, S3Flags};
use crate::store::StoreConfig;
use crate::tls::TlsSource;
use crate::units::{parse_bool, parse_duration, parse_size};

pub const DEFAULT_DATA_DIR: &str = "./atoll-data";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5000";

/// What this run of atoll does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Version,
    /// One garbage collection, then exit.
    Gc,
    /// Check the disk against the index (and repair), then exit.
    Verify {
        repair: bool,
    },
    /// Print a packaging file the binary carries.
    PrintFile(String),
    /// Print an htpasswd line for this user.
    HashPassword(String),
    /// --import, --import-spool, --export, --inventory (bundle/job.rs).
    Bundle(crate::bundle::Job),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub log_level: LevelFilter,
    pub read_only: bool,
    pub no_delete: bool,
    /// HTTPS, if asked for. For `Auto`, an empty host-name list means "this machine's name",
    /// filled in at startup.
    pub tls: Option<TlsSource>,
    pub auth: AuthConfig,
    pub gc: GcConfig,
    pub cache: CacheConfig,
    /// Connection time limits and caps (environment variables only: `http/limits.rs`).
    pub limits: Limits,
    /// Where the index lives (`--index`).
    pub index: IndexConfig,
    /// Where blobs live (`--blob-store`).
    pub blobs: StoreConfig,
    /// Blob GETs are answered with a presigned URL of the object store (`--blob-redirect`).
    pub blob_redirect: bool,
}

/// The pull-through cache's settings, as given (upstreams are checked and their credentials
/// file read at startup, before atoll binds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheConfig {
    pub upstreams: Vec<String>,
    pub credentials: Vec<String>,
    pub credentials_file: Option<PathBuf>,
    /// Seconds a pull by tag waits for the upstream.
    pub tag_timeout: i64,
    pub ttl: i64,
    pub max_bytes: Option<u64>,
    pub pins: Vec<String>,
    pub evict_interval: i64,
}

/// Garbage collection settings (all durations in seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcConfig {
    pub dry_run: bool,
    pub delete_untagged: bool,
    pub grace: i64,
    /// 0: no scheduled collection.
    pub interval: i64,
    pub upload_ttl: i64,
}

impl CacheConfig {
    /// The pull-through cache's settings, checked, with the credentials file read (`None`:
    /// no upstream, no cache).
    pub fn proxy(&self) -> Result<Option<ProxyConfig>> {
        let c = self;
        if c.upstreams.is_empty() {
            if !c.credentials.is_empty() || c.credentials_file.is_some() {
                return Err(Error::Config(
                    "--upstream-credentials without any --upstream".into(),
                ));
            }
            return Ok(None);
        }
        let mut credentials = c.credentials.clone();
        if let Some(path) = &c.credentials_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!(
                    "--upstream-credentials-file {}: cannot read: {e}",
                    path.display()
                ))
            })?;
            credentials.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        let upstreams = Upstreams::parse(&c.upstreams, &credentials).map_err(Error::Config)?;
        Ok(Some(ProxyConfig {
            upstreams,
            tag_timeout: std::time::Duration::from_secs(c.tag_timeout as u64),
            ttl: c.ttl,
            max_bytes: c.max_bytes,
            pins: c.pins.clone(),
            evict_interval: c.evict_interval,
        }))
    }
}

impl GcConfig {
    pub fn options(&self) -> crate::gc::GcOptions {
        crate::gc::GcOptions {
            dry_run: self.dry_run,
            delete_untagged: self.delete_untagged,
            grace: self.grace,
            upload_ttl: Some(self.upload_ttl),
        }
    }
}

/// Reads one flag: the command line, else `ATOLL_<NAME>`.
struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    fn value(&self, flag: Option<String>, var: &str) -> Option<(String, String)> {
        match flag {
            Some(v) => Some((v, format!("--{}", flag_name(var)))),
            None => (self.env)(var)
                .filter(|v| !v.is_empty())
                .map(|v| (v, var.to_owned())),
        }
    }

    fn switch(&self, flag: bool, var: &str) -> Result<bool> {
        if flag {
            return Ok(true);
        }
        match (self.env)(var).as_deref().map(str::trim) {
            None | Some("") => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| {
                Error::Config(format!("{var}={v:?}: expected true or false (1/0, yes/no)"))
            }),
        }
    }
}

/// `ATOLL_DATA_DIR` -> `data-dir`.
fn flag_name(var: &str) -> String {
    var.trim_start_matches("ATOLL_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

impl Config {
    /// Builds the configuration from parsed flags and an environment lookup.
    pub fn from_args(args: Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let src = Sources { env };
        let mode = match (&args.hash_password, args.version) {
            (_, true) => Mode::Version,
            (Some(user), false) => {
                if user.is_empty() || user.contains(':') || user.chars().any(char::is_whitespace) {
                    return Err(Error::Config(format!(
                        "--hash-password: {user:?} is not a user name (no ':' or spaces)"
                    )));
                }
                Mode::HashPassword(user.clone())
            }
            (None, false) if args.print_file.is_some() => {
                Mode::PrintFile(args.print_file.clone().unwrap_or_default())
            }
            (None, false) if args.gc && args.verify => {
                return Err(Error::Config("--gc and --verify: choose one".into()));
            }
            (None, false) if args.gc => Mode::Gc,
            (None, false) if args.verify => Mode::Verify {
                repair: args.repair,
            },
            (None, false) => Mode::Serve,
        };
        if args.repair && !args.verify {
            return Err(Error::Config("--repair only applies to --verify".into()));
        }
        if args.dry_run && mode != Mode::Gc {
            return Err(Error::Config("--dry-run only applies to --gc".into()));
        }
        let mode = match crate::bundle::Job::from_args(&args, env)? {
            Some(job) if mode == Mode::Serve => Mode::Bundle(job),
            Some(_) => {
                return Err(Error::Config(
                    "--import, --export and --inventory cannot be combined with another mode"
                        .into(),
                ))
            }
            None => mode,
        };
        let data_dir = src.value(args.data_dir, "ATOLL_DATA_DIR").map_or_else(
            || PathBuf::from(DEFAULT_DATA_DIR),
            |(v, _)| PathBuf::from(v),
        );
        let listen = match src.value(args.listen, "ATOLL_LISTEN") {
            None => DEFAULT_LISTEN.parse().expect("default address parses"),
            Some((v, from)) => parse_listen(&v).ok_or_else(|| {
                Error::Config(format!("{from}: {v:?} is not an address like 0.0.0.0:5000"))
            })?,
        };
        let log_level = match src.value(args.log_level, "ATOLL_LOG_LEVEL") {
            None => LevelFilter::Info,
            Some((v, from)) => parse_level(&v).ok_or_else(|| {
                Error::Config(format!(
                    "{from}: {v:?} is not one of error, warn, info, debug"
                ))
            })?,
        };
        let tls = tls_source(
            &src,
            &args.tls_cert,
            &args.tls_key,
            args.tls_auto,
            &args.hostname,
            &data_dir,
        )?;
        let auth = auth_config(&src, &args.htpasswd, args.anonymous_pull)?;
        let duration = |flag: Option<String>, var: &str, default: i64| -> Result<i64> {
            match src.value(flag, var) {
                None => Ok(default),
                Some((v, from)) => parse_duration(&v).ok_or_else(|| {
                    Error::Config(format!(
                        "{from}: {v:?} is not a duration like 30s, 15m, 1h or 7d"
                    ))
                }),
            }
        };
        let list = |flag: Vec<String>, var: &str| -> Vec<String> {
            if !flag.is_empty() {
                return flag;
            }
            (src.env)(var)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let cache = CacheConfig {
            upstreams: list(args.upstream, "ATOLL_UPSTREAMS"),
            credentials: list(args.upstream_credentials, "ATOLL_UPSTREAM_CREDENTIALS"),
            credentials_file: src
                .value(
                    args.upstream_credentials_file,
                    "ATOLL_UPSTREAM_CREDENTIALS_FILE",
                )
                .map(|(v, _)| PathBuf::from(v)),
            tag_timeout: duration(args.upstream_timeout, "ATOLL_UPSTREAM_TIMEOUT", 3)?.max(1),
            ttl: duration(args.cache_ttl, "ATOLL_CACHE_TTL", 7 * 86_400)?,
            max_bytes: match src.value(args.cache_max_bytes, "ATOLL_CACHE_MAX_BYTES") {
                None => None,
                Some((v, from)) => match parse_size(&v) {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => {
                        return Err(Error::Config(format!(
                            "{from}: {v:?} is not a size like 500M or 50G"
                        )))
                    }
                },
            },
            pins: list(args.cache_pin, "ATOLL_CACHE_PIN"),
            evict_interval: duration(args.evict_interval, "ATOLL_EVICT_INTERVAL", 3600)?.max(1),
        };
        let blobs = match src.value(args.blob_store, "ATOLL_BLOB_STORE") {
            None => StoreConfig::Disk,
            Some((v, _)) if v == "disk" => StoreConfig::Disk,
            Some((store, _)) => {
                let flags = S3Flags {
                    store,
                    endpoint: src
                        .value(args.s3_endpoint, "ATOLL_S3_ENDPOINT")
                        .map(|v| v.0),
                    region: src.value(args.s3_region, "ATOLL_S3_REGION").map(|v| v.0),
                    addressing: src
                        .value(args.s3_addressing, "ATOLL_S3_ADDRESSING")
                        .map(|v| v.0),
                    credentials_file: src
                        .value(args.s3_credentials_file, "ATOLL_S3_CREDENTIALS_FILE")
                        .map(|v| v.0),
                };
                StoreConfig::S3(Box::new(
                    S3Config::parse(&flags, env).map_err(Error::Config)?,
                ))
            }
        };
        let index = match src.value(args.index, "ATOLL_INDEX") {
            None => IndexConfig::Sqlite,
            Some((url, from)) => {
                let password = match src
                    .value(args.index_password_file, "ATOLL_INDEX_PASSWORD_FILE")
                {
                    Some((path, from)) => Some(
                        std::fs::read_to_string(&path)
                            .map_err(|e| Error::Config(format!("{from} {path}: cannot read: {e}")))?
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                    ),
                    None => env("ATOLL_INDEX_PASSWORD"),
                };
                IndexConfig::Postgres(Box::new(
                    PgConfig::parse(&url, password.as_deref())
                        .map_err(|e| Error::Config(format!("{from}: {e}")))?,
                ))
            }
        };
        let blob_redirect = src.switch(args.blob_redirect, "ATOLL_BLOB_REDIRECT")?;
        if blob_redirect && blobs == StoreConfig::Disk {
            return Err(Error::Config(
                "--blob-redirect needs an s3:// --blob-store: a disk has no URL to send clients to"
                    .into(),
            ));
        }
        let gc = GcConfig {
            dry_run: args.dry_run,
            delete_untagged: src.switch(args.delete_untagged, "ATOLL_DELETE_UNTAGGED")?,
            grace: duration(args.gc_grace, "ATOLL_GC_GRACE", 3600)?,
            interval: duration(args.gc_interval, "ATOLL_GC_INTERVAL", 24 * 3600)?,
            upload_ttl: duration(args.upload_ttl, "ATOLL_UPLOAD_TTL", 24 * 3600)?,
        };
        Ok(Config {
            mode,
            data_dir,
            listen,
            log_level,
            read_only: src.switch(args.read_only, "ATOLL_READ_ONLY")?,
            no_delete: src.switch(args.no_delete, "ATOLL_NO_DELETE")?,
            tls,
            auth,
            gc,
            cache,
            limits: Limits::from_env(env)?,
            index,
            blobs,
            blob_redirect,
        })
    }
}

fn tls_source(
    src: &Sources,
    cert: &Option<String>,
    key: &Option<String>,
    auto: bool,
    hostnames: &[String],
    data_dir: &std::path::Path,
) -> Result<Option<TlsSource>> {
    let cert = src.value(cert.clone(), "ATOLL_TLS_CERT");
    let key = src.value(key.clone(), "ATOLL_TLS_KEY");
    let auto = src.switch(auto, "ATOLL_TLS_AUTO")?;
    let mut names: Vec<String> = hostnames.to_vec();
    if names.is_empty() {
        if let Some((list, _)) = src.value(None, "ATOLL_HOSTNAME") {
            names = list
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
        }
    }
    for n in &names {
        if !valid_hostname(n) {
            return Err(Error::Config(format!(
                "--hostname: {n:?} is not a host name or IP address"
            )));
        }
    }
    match (cert, key, auto) {
        (Some(_), _, true) | (_, Some(_), true) => Err(Error::Config(
            "--tls-auto and --tls-cert/--tls-key both given: choose one".into(),
        )),
        (Some((c, _)), Some((k, _)), false) => Ok(Some(TlsSource::Files {
            cert: PathBuf::from(c),
            key: PathBuf::from(k),
        })),
        (Some((_, from)), None, false) => Err(Error::Config(format!("{from} needs --tls-key"))),
        (None, Some((_, from)), false) => Err(Error::Config(format!("{from} needs --tls-cert"))),
        (None, None, true) => Ok(Some(TlsSource::Auto {
            dir: data_dir.join("tls"),
            hostnames: names,
        })),
        (None, None, false) => Ok(None),
    }
}

fn valid_hostname(n: &str) -> bool {
    n.parse::<std::net::IpAddr>().is_ok()
        || (!n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

fn auth_config(
    src: &Sources,
    htpasswd: &Option<String>,
    anonymous_pull: bool,
) -> Result<AuthConfig> {
    let htpasswd = src
        .value(htpasswd.clone(), "ATOLL_HTPASSWD")
        .map(|(v, _)| PathBuf::from(v));
    let user = (src.env)("ATOLL_USERNAME").filter(|v| !v.is_empty());
    let pass = (src.env)("ATOLL_PASSWORD").filter(|v| !v.is_empty());
    let single_user = match (user, pass) {
        (Some(u), Some(p)) => {
            if u.contains(':') {
                return Err(Error::Config("ATOLL_USERNAME must not contain ':'".into()));
            }
            Some((u, p))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::Config(
                "ATOLL_USERNAME is set but ATOLL_PASSWORD is not".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "ATOLL_PASSWORD is set but ATOLL_USERNAME is not".into(),
            ))
        }
    };
    let anonymous_pull = src.switch(anonymous_pull, "ATOLL_ANONYMOUS_PULL")?;
    if anonymous_pull && htpasswd.is_none() && single_user.is_none() {
        return Err(Error::Config(
            "--anonymous-pull needs logins to apply to pushes: give --htpasswd or ATOLL_USERNAME/ATOLL_PASSWORD".into(),
        ));
    }
    Ok(AuthConfig {
        htpasswd,
        single_user,
        anonymous_pull,
    })
}

/// `HOST:PORT`, `[V6]:PORT`, or `:PORT` for every IPv4 address.
fn parse_listen(v: &str) -> Option<SocketAddr> {
    let v = v.trim();
    match v.strip_prefix(':') {
        Some(port) => Some(SocketAddr::from(([0, 0, 0, 0], port.parse::<u16>().ok()?))),
        None => v.parse().ok(),
    }
}

fn parse_level(v: &str) -> Option<LevelFilter> {
    match v.trim().to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
