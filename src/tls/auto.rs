//! `--tls-auto`: a small CA and a server certificate it signs, made under `<data-dir>/tls/`
//! and kept up to date: the server certificate is reissued when it is due for renewal or lacks a
//! name, the CA when it cannot vouch for every name asked for.
//!
//! The CA is for these names only. Operators put it in trust stores (docker's `certs.d/`, the
//! system's), so a CA that could sign for any name would let whoever reads `ca.key` impersonate
//! any site to those machines. It carries a critical NameConstraints extension permitting
//! exactly the names and addresses it was made for (`name_constraints.rs`), so clients refuse a
//! certificate it signs for anything else. A restart with a name it does not cover (or a CA made
//! before it had constraints) makes a new CA, with a new key, and says so: clients must then
//! trust the new `ca.crt`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use log::{info, warn};
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Extension, X509NameBuilder, X509};

use super::first_reason;
use super::name_constraints;
use crate::error::{Error, Result};

/// The generated server certificate is replaced when it has fewer days left than this.
pub const RENEW_DAYS_LEFT: u32 = 30;
const SERVER_DAYS: u32 = 365;
const CA_DAYS: u32 = 3650;

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

/// Makes or refreshes the CA and the server certificate for `hostnames` in `dir`. Keys are
/// written readable by atoll's user only.
pub(super) fn ensure_generated(dir: &Path, hostnames: &[String]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| io("securing", dir, e))?;
    let names = subject_names(hostnames);
    let (ca_cert, ca_key) = ensure_ca(dir, &names)?;
    let (srv_crt, srv_key) = (dir.join("server.crt"), dir.join("server.key"));
    if let Some(why) = server_cert_outdated(&srv_crt, &srv_key, &names, &ca_cert) {
        let key = new_key().map_err(gen)?;
        let cert = make_server(&key, &ca_cert, &ca_key, &names).map_err(gen)?;
        let mut chain = cert.to_pem().map_err(gen)?;
        chain.extend(ca_cert.to_pem().map_err(gen)?);
        write_key(&srv_key, &key)?;
        write_file(&srv_crt, &chain, 0o644).map_err(|e| io("writing", &srv_crt, e))?;
        info!(
            "--tls-auto: issued a server certificate for {} ({why})",
            names.join(", ")
        );
    }
    Ok(())
}

/// The CA, made when there is none or when the one there cannot vouch for every name.
fn ensure_ca(dir: &Path, names: &[String]) -> Result<(X509, PKey<Private>)> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let why = if crt.exists() && key.exists() {
        let (cert, pkey) = load_ca(&crt, &key)?;
        match ca_outdated(&cert, &pkey, names) {
            None => return Ok((cert, pkey)),
            Some(why) => Some(why),
        }
    } else {
        None
    };
    let pkey = new_key().map_err(gen)?;
    let cert = make_ca(&pkey, names).map_err(gen)?;
    write_key(&key, &pkey)?;
    write_file(&crt, &cert.to_pem().map_err(gen)?, 0o644).map_err(|e| io("writing", &crt, e))?;
    match why {
        None => info!(
            "--tls-auto: created a CA in {} for {}",
            crt.display(),
            names.join(", ")
        ),
        Some(why) => warn!(
            "--tls-auto: made a new CA in {} for {} ({why}); every client must now trust the \
             new ca.crt in place of the old one",
            crt.display(),
            names.join(", ")
        ),
    }
    Ok((cert, pkey))
}

fn load_ca(crt: &Path, key: &Path) -> Result<(X509, PKey<Private>)> {
    let bad = |p: &Path, e: ErrorStack| {
        Error::Config(format!("--tls-auto: {}: {}", p.display(), first_reason(&e)))
    };
    let cert = X509::from_pem(&fs::read(crt).map_err(|e| io("reading", crt, e))?)
        .map_err(|e| bad(crt, e))?;
    let pkey = PKey::private_key_from_pem(&fs::read(key).map_err(|e| io("reading", key, e))?)
        .map_err(|e| bad(key, e))?;
    Ok((cert, pkey))
}

/// Why the CA must be made anew, or `None` if it may sign for every one of `names`.
fn ca_outdated(cert: &X509, key: &PKey<Private>, names: &[String]) -> Option<String> {
    if !cert.public_key().is_ok_and(|k| k.public_eq(key)) {
        return Some("ca.key does not match ca.crt".into());
    }
    let der = cert.to_der().ok()?;
    let Some(permitted) = name_constraints::permitted(&der) else {
        return Some("the old one has no name constraints: it could vouch for any name".into());
    };
    let new: Vec<&str> = names
        .iter()
        .filter(|n| !name_constraints::covers(&permitted, n))
        .map(String::as_str)
        .collect();
    if new.is_empty() {
        return None;
    }
    Some(format!(
        "the old one was made for {}, not for {}",
        permitted.join(", "),
        new.join(", ")
    ))
}

/// Why the server certificate must be (re)issued, or `None` if it is fine.
fn server_cert_outdated(
    crt: &Path,
    key: &Path,
    names: &[String],
    ca: &X509,
) -> Option<&'static str> {
    let (Ok(pem), true) = (fs::read(crt), key.exists()) else {
        return Some("none yet");
    };
    let Ok(cert) = X509::from_pem(&pem) else {
        return Some("the old one is unreadable");
    };
    if !ca
        .public_key()
        .and_then(|k| cert.verify(&k))
        .unwrap_or(false)
    {
        return Some("a new CA");
    }
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

fn new_key() -> std::result::Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> std::result::Result<openssl::asn1::Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn make_ca(key: &PKey<Private>, names: &[String]) -> std::result::Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    let host = names.first().map_or("localhost", String::as_str);
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
    // Critical: a client that cannot enforce the constraints must refuse the CA outright.
    let oid = Asn1Object::from_str(name_constraints::OID)?;
    let value = Asn1OctetString::new_from_bytes(&name_constraints::der(names))?;
    b.append_extension(X509Extension::new_from_der(&oid, true, &value)?)?;
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
) -> std::result::Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &names[0])?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(serial()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(key)?;
    // A day of slack for clocks that lag.
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

fn io(doing: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Config(format!("--tls-auto: {doing} {}: {e}", p.display()))
}

fn gen(e: ErrorStack) -> Error {
    Error::Config(format!("--tls-auto: generating a certificate: {e}"))
}

fn write_key(path: &Path, key: &PKey<Private>) -> Result<()> {
    let pem = key.private_key_to_pem_pkcs8().map_err(gen)?;
    write_file(path, &pem, 0o600).map_err(|e| io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{Tls, TlsSource};

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
        assert_eq!(
            name_constraints::permitted(&ca.to_der().unwrap()).unwrap(),
            names,
            "the CA may vouch for these names only"
        );
        // A second start reuses both; a name the CA was not made for makes a new CA (with a
        // new key) and a server certificate it signs; fewer names change nothing.
        let before = fs::read(tls.join("server.crt")).unwrap();
        Tls::load(source).unwrap();
        assert_eq!(fs::read(tls.join("server.crt")).unwrap(), before);
        let (ca_before, ca_key_before) = (read(&tls, "ca.crt"), read(&tls, "ca.key"));
        let more = vec!["registry.lan".into(), "other.lan".into()];
        ensure_generated(&tls, &more).unwrap();
        assert_ne!(read(&tls, "server.crt"), before);
        assert_ne!(read(&tls, "ca.crt"), ca_before);
        assert_ne!(read(&tls, "ca.key"), ca_key_before);
        let ca = X509::from_pem(&read(&tls, "ca.crt")).unwrap();
        assert_eq!(
            name_constraints::permitted(&ca.to_der().unwrap()).unwrap(),
            subject_names(&more)
        );
        let (ca_now, server_now) = (read(&tls, "ca.crt"), read(&tls, "server.crt"));
        ensure_generated(&tls, &["other.lan".into()]).unwrap();
        assert_eq!(
            (read(&tls, "ca.crt"), read(&tls, "server.crt")),
            (ca_now, server_now)
        );
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn a_ca_without_name_constraints_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let names = vec!["a.lan".to_string()];
        ensure_generated(&tls, &names).unwrap();
        // What atoll made before its CAs had constraints.
        let key = new_key().unwrap();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "atoll CA (a.lan)")
            .unwrap();
        let name = name.build();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(99).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let old = b.build();
        assert_eq!(name_constraints::permitted(&old.to_der().unwrap()), None);
        assert_eq!(
            ca_outdated(&old, &key, &subject_names(&names)).unwrap(),
            "the old one has no name constraints: it could vouch for any name"
        );
        write_key(&tls.join("ca.key"), &key).unwrap();
        fs::write(tls.join("ca.crt"), old.to_pem().unwrap()).unwrap();
        ensure_generated(&tls, &names).unwrap();
        let ca = X509::from_pem(&read(&tls, "ca.crt")).unwrap();
        assert!(name_constraints::permitted(&ca.to_der().unwrap()).is_some());
        let server = X509::from_pem(&read(&tls, "server.crt")).unwrap();
        assert!(server.verify(&ca.public_key().unwrap()).unwrap());
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
                &subject_names(&names),
                &ca
            ),
            Some("the old one expires soon")
        );
        ensure_generated(&tls, &names).unwrap();
        assert_eq!(
            server_cert_outdated(
                &tls.join("server.crt"),
                &tls.join("server.key"),
                &subject_names(&names),
                &ca
            ),
            None
        );
    }
}
