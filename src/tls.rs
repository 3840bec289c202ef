//! TLS: the operator's PEM certificate (full chain) and key, or, with `--tls-auto`, a small CA
//! and a server certificate atoll makes itself under `<data-dir>/tls/` (`tls/auto.rs`; the CA's
//! name constraints in `tls/name_constraints.rs`).
//!
//! Everything is checked before atoll binds: a missing or unreadable file, a key that does not
//! match the certificate, a certificate that has expired or is not valid yet stop it with one
//! line naming the file. The acceptor can be swapped while serving (SIGHUP, renewal of the
//! generated certificate): connections already open keep theirs.
//!
//! The TLS versions and ciphers are native-tls's: its OpenSSL acceptor is built from Mozilla's
//! "intermediate" profile v4, which offers TLS 1.2 only (see README, "TLS").

mod auto;
mod name_constraints;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use log::warn;
use openssl::asn1::Asn1Time;
use openssl::pkey::PKey;
use openssl::x509::X509;

pub use auto::{subject_names, RENEW_DAYS_LEFT};

use crate::error::{Error, Result};

/// How atoll gets its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generated under `dir` for these names (plus localhost and the loopback addresses).
    Auto {
        dir: PathBuf,
        hostnames: Vec<String>,
    },
}

impl TlsSource {
    /// `--tls-auto` with no `--hostname` covers this machine's host name.
    pub fn with_default_hostname(&self) -> TlsSource {
        match self {
            TlsSource::Auto { dir, hostnames } if hostnames.is_empty() => {
                // /proc/sys may be hidden (systemd's ProcSubset=pid): /etc/hostname then.
                let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
                    .iter()
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    .map(|h| h.trim().to_owned())
                    .find(|h| !h.is_empty())
                    .unwrap_or_default();
                TlsSource::Auto {
                    dir: dir.clone(),
                    hostnames: if host.is_empty() { vec![] } else { vec![host] },
                }
            }
            other => other.clone(),
        }
    }
}

pub struct Tls {
    source: TlsSource,
    acceptor: RwLock<async_native_tls::TlsAcceptor>,
}

/// Paths of the generated CA, for the startup message.
pub struct AutoFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
}

impl Tls {
    /// Loads (or, for `Auto`, creates) the certificate and builds the acceptor.
    pub fn load(source: TlsSource) -> Result<Tls> {
        let acceptor = build(&source)?;
        Ok(Tls {
            source,
            acceptor: RwLock::new(acceptor),
        })
    }

    pub fn source(&self) -> &TlsSource {
        &self.source
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> async_native_tls::TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the files (SIGHUP) or renews a generated certificate that is due. On error the
    /// acceptor in use stays.
    pub fn reload(&self) -> Result<()> {
        let fresh = build(&self.source)?;
        *self.acceptor.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// For `Auto`: the generated files.
    pub fn auto_files(&self) -> Option<AutoFiles> {
        match &self.source {
            TlsSource::Auto { dir, .. } => Some(AutoFiles {
                ca_cert: dir.join("ca.crt"),
                server_cert: dir.join("server.crt"),
            }),
            TlsSource::Files { .. } => None,
        }
    }
}

fn build(source: &TlsSource) -> Result<async_native_tls::TlsAcceptor> {
    let (cert, key) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::Auto { dir, hostnames } => {
            auto::ensure_generated(dir, hostnames)?;
            (dir.join("server.crt"), dir.join("server.key"))
        }
    };
    acceptor_from_files(&cert, &key)
}

/// Reads and checks a PEM chain and key, and builds an acceptor from them.
pub fn acceptor_from_files(
    cert_path: &Path,
    key_path: &Path,
) -> Result<async_native_tls::TlsAcceptor> {
    let bad_cert = |m: String| Error::Config(format!("--tls-cert {}: {m}", cert_path.display()));
    let bad_key = |m: String| Error::Config(format!("--tls-key {}: {m}", key_path.display()));
    let cert_pem = fs::read(cert_path).map_err(|e| bad_cert(format!("cannot read: {e}")))?;
    let key_pem = fs::read(key_path).map_err(|e| bad_key(format!("cannot read: {e}")))?;
    let chain = X509::stack_from_pem(&cert_pem)
        .map_err(|e| bad_cert(format!("not a PEM certificate: {}", first_reason(&e))))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad_cert("holds no PEM certificate".into()))?;
    let key = PKey::private_key_from_pem(&key_pem)
        .map_err(|e| bad_key(format!("not a PEM private key: {}", first_reason(&e))))?;
    let leaf_key = leaf.public_key().map_err(|e| bad_cert(first_reason(&e)))?;
    if !leaf_key.public_eq(&key) {
        return Err(bad_key(format!(
            "does not match the certificate in {}",
            cert_path.display()
        )));
    }
    let now = Asn1Time::days_from_now(0).map_err(|e| bad_cert(first_reason(&e)))?;
    if leaf.not_after() < now {
        return Err(bad_cert(format!(
            "the certificate expired on {}",
            leaf.not_after()
        )));
    }
    if leaf.not_before() > now {
        return Err(bad_cert(format!(
            "the certificate is not valid until {}",
            leaf.not_before()
        )));
    }
    if let Ok(diff) = now.diff(leaf.not_after()) {
        if diff.days < 14 {
            warn!(
                "--tls-cert {}: the certificate expires in {} days",
                cert_path.display(),
                diff.days
            );
        }
    }
    let pkcs8 = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| bad_key(first_reason(&e)))?;
    let identity = native_tls::Identity::from_pkcs8(&cert_pem, &pkcs8)
        .map_err(|e| bad_cert(format!("cannot be used: {e}")))?;
    let acceptor = native_tls::TlsAcceptor::new(identity)
        .map_err(|e| bad_cert(format!("cannot be used: {e}")))?;
    Ok(acceptor.into())
}

fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|x| x.reason().map(str::to_owned))
        .unwrap_or_else(|| e.to_string())
}
