//! TLS: the operator's PEM certificate (full chain) and key, or, with `--tls-auto`, a small CA
//! and a server certificate atoll makes itself under `<data-dir>/tls/`.
//!
//! Everything is checked before atoll binds: a missing or unreadable file, a key that does not
//! match the certificate, a certificate that has expired or is not valid yet stop it with one
//! line naming the file. The acceptor can be swapped while serving (SIGHUP, renewal of the
//! generated certificate): connections already open keep theirs.
//!
//! The TLS versions and ciphers are native-tls's: its OpenSSL acceptor is built from Mozilla's
//! "intermediate" profile v4, which offers TLS 1.2 only (see README, "TLS").

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use log::{info, warn};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

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

/// The generated server certificate is replaced when it has fewer days left than this.
pub const RENEW_DAYS_LEFT: u32 = 30;
const SERVER_DAYS: u32 = 365;
const CA_DAYS: u32 = 3650;

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
            ensure_generated(dir, hostnames)?;
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

/// The names a generated certificate covers: the operator's, then the local ones.
pub fn subject_names(hostnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> = hostnames.to_vec();
    for local in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == local) {
            names.push(local.to_owned());
        }
    }
    names
}

/// Makes the CA (once) and a server certificate (when missing, due for renewal, or not
/// covering every name asked for). Keys are written readable by atoll's user only.
fn ensure_generated(dir: &Path, hostnames: &[String]) -> Result<()> {
    let io = |doing: &str, p: &Path, e: std::io::Error| {
        Error::Config(format!("--tls-auto: {doing} {}: {e}", p.display()))
    };
    fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| io("securing", dir, e))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let gen = |e: openssl::error::ErrorStack| {
        Error::Config(format!("--tls-auto: generating a certificate: {e}"))
    };
    if !ca_crt.exists() || !ca_key.exists() {
        let key = new_key().map_err(gen)?;
        let cert = make_ca(&key, hostnames).map_err(gen)?;
        write_file(
            &ca_key,
            &key.private_key_to_pem_pkcs8().map_err(gen)?,
            0o600,
        )
        .map_err(|e| io("writing", &ca_key, e))?;
        write_file(&ca_crt, &cert.to_pem().map_err(gen)?, 0o644)
            .map_err(|e| io("writing", &ca_crt, e))?;
        info!("--tls-auto: created a CA in {}", ca_crt.display());
    }
    let ca_cert = X509::from_pem(&fs::read(&ca_crt).map_err(|e| io("reading", &ca_crt, e))?)
        .map_err(|e| {
            Error::Config(format!(
                "--tls-auto: {}: {}",
                ca_crt.display(),
                first_reason(&e)
            ))
        })?;
    let ca_pkey =
        PKey::private_key_from_pem(&fs::read(&ca_key).map_err(|e| io("reading", &ca_key, e))?)
            .map_err(|e| {
                Error::Config(format!(
                    "--tls-auto: {}: {}",
                    ca_key.display(),
                    first_reason(&e)
                ))
            })?;
    let (srv_crt, srv_key) = (dir.join("server.crt"), dir.join("server.key"));
    let names = subject_names(hostnames);
    if let Some(why) = server_cert_outdated(&srv_crt, &srv_key, &names) {
        let key = new_key().map_err(gen)?;
        let cert = make_server(&key, &ca_cert, &ca_pkey, &names).map_err(gen)?;
        let mut chain = cert.to_pem().map_err(gen)?;
        chain.extend(ca_cert.to_pem().map_err(gen)?);
        write_file(
            &srv_key,
            &key.private_key_to_pem_pkcs8().map_err(gen)?,
            0o600,
        )
        .map_err(|e| io("writing", &srv_key, e))?;
        write_file(&srv_crt, &chain, 0o644).map_err(|e| io("writing", &srv_crt, e))?;
        info!(
            "--tls-auto: issued a server certificate for {} ({why})",
            names.join(", ")
        );
    }
    Ok(())
}

/// Why the server certificate must be (re)issued, or `None` if it is fine.
fn server_cert_outdated(crt: &Path, key: &Path, names: &[String]) -> Option<&'static str> {
    let (Ok(pem), true) = (fs::read(crt), key.exists()) else {
        return Some("none yet");
    };
    let Ok(cert) = X509::from_pem(&pem) else {
        return Some("the old one is unreadable");
    };
    let due = Asn1Time::days_from_now(RENEW_DAYS_LEFT).ok()?;
    if cert.not_after() < due {
        return Some("the old one expires soon");
    }
    let covered: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| {
                    n.dnsname()
                        .map(str::to_owned)
                        .or_else(|| n.ipaddress().and_then(ip_text))
                })
                .collect()
        })
        .unwrap_or_default();
    if names.iter().any(|n| !covered.contains(n)) {
        return Some("new host names");
    }
    None
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

fn new_key() -> std::result::Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> std::result::Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn make_ca(
    key: &PKey<Private>,
    hostnames: &[String],
) -> std::result::Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    let host = hostnames.first().map_or("localhost", String::as_str);
    name.append_entry_by_nid(Nid::COMMONNAME, &format!("atoll CA ({host})"))?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(serial()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(CA_DAYS)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn make_server(
    key: &PKey<Private>,
    ca: &X509,
    ca_key: &PKey<Private>,
    names: &[String],
) -> std::result::Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &names[0])?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(serial()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(key)?;
    // A day of slack for clocks that lag. `time_t` is 32 bits on armv7-unknown-linux-gnueabihf:
    // past 2038 it cannot hold the time, and the certificate starts now.
    #[allow(clippy::useless_conversion)] // i64 -> i64 where `time_t` is 64 bits
    let not_before = match (crate::clock::now() - 86_400).try_into() {
        Ok(t) => Asn1Time::from_unix(t)?,
        Err(_) => Asn1Time::days_from_now(0)?,
    };
    b.set_not_before(not_before.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(SERVER_DAYS)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()?,
    )?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        if n.parse::<std::net::IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let san = san.build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(san)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Writes a file atomically with the given mode (temp name, fsync, rename).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_creates_a_ca_and_a_server_certificate_then_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let source = TlsSource::Auto {
            dir: dir.path().join("tls"),
            hostnames: vec!["registry.lan".into()],
        };
        Tls::load(source.clone()).unwrap();
        let tls = dir.path().join("tls");
        for (f, mode) in [
            ("ca.key", 0o600),
            ("server.key", 0o600),
            ("ca.crt", 0o644),
            ("server.crt", 0o644),
        ] {
            let m = fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{f}");
        }
        let cert = X509::from_pem(&fs::read(tls.join("server.crt")).unwrap()).unwrap();
        let names: Vec<String> = cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| {
                n.dnsname()
                    .map(str::to_owned)
                    .or_else(|| n.ipaddress().and_then(ip_text))
            })
            .collect();
        assert_eq!(names, vec!["registry.lan", "localhost", "127.0.0.1", "::1"]);
        let ca = X509::from_pem(&fs::read(tls.join("ca.crt")).unwrap()).unwrap();
        assert!(
            cert.verify(&ca.public_key().unwrap()).unwrap(),
            "signed by the CA"
        );
        // A second start reuses both; a new name reissues the server certificate only.
        let before = fs::read(tls.join("server.crt")).unwrap();
        Tls::load(source).unwrap();
        assert_eq!(fs::read(tls.join("server.crt")).unwrap(), before);
        let ca_before = fs::read(tls.join("ca.crt")).unwrap();
        Tls::load(TlsSource::Auto {
            dir: tls.clone(),
            hostnames: vec!["registry.lan".into(), "other.lan".into()],
        })
        .unwrap();
        assert_ne!(fs::read(tls.join("server.crt")).unwrap(), before);
        assert_eq!(fs::read(tls.join("ca.crt")).unwrap(), ca_before);
    }

    #[test]
    fn a_certificate_due_for_renewal_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let names = vec!["a.lan".to_string()];
        ensure_generated(&tls, &names).unwrap();
        // Replace the server certificate by one that expires in 10 days.
        let ca = X509::from_pem(&fs::read(tls.join("ca.crt")).unwrap()).unwrap();
        let ca_key = PKey::private_key_from_pem(&fs::read(tls.join("ca.key")).unwrap()).unwrap();
        let key = PKey::private_key_from_pem(&fs::read(tls.join("server.key")).unwrap()).unwrap();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(ca.subject_name()).unwrap();
        b.set_issuer_name(ca.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(10).unwrap())
            .unwrap();
        b.sign(&ca_key, MessageDigest::sha256()).unwrap();
        fs::write(tls.join("server.crt"), b.build().to_pem().unwrap()).unwrap();
        assert_eq!(
            server_cert_outdated(
                &tls.join("server.crt"),
                &tls.join("server.key"),
                &subject_names(&names)
            ),
            Some("the old one expires soon")
        );
        ensure_generated(&tls, &names).unwrap();
        assert_eq!(
            server_cert_outdated(
                &tls.join("server.crt"),
                &tls.join("server.key"),
                &subject_names(&names)
            ),
            None
        );
    }
}
