//! HTTPS: with the operator's certificate, with a generated CA, and every certificate problem
//! that must stop atoll before it binds.

use std::path::Path;
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use crate::support::content::*;
use crate::support::Atoll;

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `localhost`, signed by `issuer` (self-signed if `None`), valid between the
/// given offsets in days from now.
fn cert(
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    from: i64,
    to: i64,
    ca: bool,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, if ca { "test CA" } else { "localhost" })
        .unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    let now = atoll::clock::now();
    b.set_not_before(Asn1Time::from_unix(now + from * 86_400).unwrap().as_ref())
        .unwrap();
    b.set_not_after(Asn1Time::from_unix(now + to * 86_400).unwrap().as_ref())
        .unwrap();
    if ca {
        b.append_extension(
            openssl::x509::extension::BasicConstraints::new()
                .critical()
                .ca()
                .build()
                .unwrap(),
        )
        .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    b.build()
}

/// A CA and a server certificate it signed: returns (ca pem, chain pem, key pem).
fn chain() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ca_key = key();
    let ca = cert(&ca_key, None, -1, 30, true);
    let k = key();
    let leaf = cert(&k, Some((&ca, &ca_key)), -1, 30, false);
    let mut chain = leaf.to_pem().unwrap();
    chain.extend(ca.to_pem().unwrap());
    (
        ca.to_pem().unwrap(),
        chain,
        k.private_key_to_pem_pkcs8().unwrap(),
    )
}

fn start_with_files(dir: &Path, chain: &[u8], key: &[u8]) -> Result<Atoll, String> {
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let (c, k) = (dir.join("chain.pem"), dir.join("key.pem"));
    Atoll::try_start_in(
        &dir.join("data"),
        &[
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            k.to_str().unwrap(),
        ],
        &[],
    )
}

#[test]
fn serves_https_with_the_operators_certificate_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = chain();
    let a = start_with_files(dir.path(), &chain, &key)
        .unwrap()
        .trust(ca, "localhost");
    assert!(
        a.log()
            .contains(&format!("listening on https://{}", a.addr)),
        "{}",
        a.log()
    );
    a.get("/v2/").expect(200, None);
    let img = Image::oci(1, 100_000);
    img.push(&a, "over/tls", "v1").expect(201, None);
    assert_eq!(a.get("/v2/over/tls/manifests/v1").body, img.manifest);
    assert_eq!(
        a.get(&format!("/v2/over/tls/blobs/{}", sha256(&img.layers[0])))
            .body,
        img.layers[0]
    );
    // A client that does not trust the CA is refused at the handshake.
    let stranger = a.req(http_types::Method::Get, "/v2/").try_send_untrusted();
    assert!(stranger.is_err());
    // Plain HTTP on the HTTPS port gets a clear answer.
    let plain = a.raw(
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(
        plain.starts_with("HTTP/1.0 400") && plain.contains("HTTPS registry"),
        "{plain}"
    );
}

#[test]
fn tls_auto_generates_a_ca_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a =
        Atoll::try_start_in(&data, &["--tls-auto", "--hostname", "registry.test"], &[]).unwrap();
    let ca_path = data.join("tls/ca.crt");
    let ca = std::fs::read(&ca_path).unwrap();
    let log = a.log();
    let port = a.addr.port();
    assert!(
        log.contains(&format!(
            "signed by the CA {}",
            ca_path.canonicalize().unwrap().display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("/etc/docker/certs.d/registry.test:{port}/ca.crt")),
        "the exact line a docker client needs: {log}"
    );
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(data.join("tls").join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key} is readable by atoll only");
    }
    // Verified by name, against the generated CA.
    let a = a.trust(ca.clone(), "localhost");
    a.get("/v2/").expect(200, None);
    Image::oci(1, 10).push(&a, "auto", "v1").expect(201, None);
    // A restart reuses the CA and the certificate.
    let a = a.restart(&["--tls-auto", "--hostname", "registry.test"]);
    assert_eq!(std::fs::read(&ca_path).unwrap(), ca);
    assert!(!a.log().contains("created a CA"));
    let a = a.trust(ca, "localhost");
    a.get("/v2/auto/manifests/v1").expect(200, None);
}

#[test]
fn a_silent_client_does_not_stall_the_handshakes_of_others() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = chain();
    let a = start_with_files(dir.path(), &chain, &key)
        .unwrap()
        .trust(ca, "localhost");
    // Ten connections that send half a ClientHello and then nothing.
    let mut silent = Vec::new();
    for _ in 0..10 {
        let mut s = std::net::TcpStream::connect(a.addr).unwrap();
        std::io::Write::write_all(&mut s, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
        silent.push(s);
    }
    let t = Instant::now();
    a.get("/v2/").expect(200, None);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn certificate_problems_stop_atoll_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chain, good_key) = chain();
    let other_key = key_pem();
    let expired = {
        let k = key();
        (
            cert(&k, None, -30, -1, false).to_pem().unwrap(),
            k.private_key_to_pem_pkcs8().unwrap(),
        )
    };
    let future = {
        let k = key();
        (
            cert(&k, None, 5, 30, false).to_pem().unwrap(),
            k.private_key_to_pem_pkcs8().unwrap(),
        )
    };
    let cases: Vec<(Vec<u8>, Vec<u8>, &str, &str)> = vec![
        (
            chain.clone(),
            other_key,
            "--tls-key",
            "does not match the certificate",
        ),
        (
            expired.0,
            expired.1,
            "--tls-cert",
            "the certificate expired on",
        ),
        (future.0, future.1, "--tls-cert", "is not valid until"),
        (
            b"not a pem".to_vec(),
            good_key.clone(),
            "--tls-cert",
            "no PEM certificate",
        ),
        (
            chain.clone(),
            b"garbage".to_vec(),
            "--tls-key",
            "not a PEM private key",
        ),
    ];
    for (c, k, flag, why) in cases {
        let log = start_with_files(dir.path(), &c, &k)
            .err()
            .expect("must not start");
        assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
        let line = log.lines().last().unwrap();
        assert!(
            line.contains(&format!("{flag} {}", dir.path().display())),
            "{log}"
        );
        assert!(line.contains(why), "{why}: {log}");
        assert!(!log.contains("listening"));
    }
    // A missing file, and a directory where a key should be.
    let log = Atoll::try_start_in(
        &dir.path().join("d"),
        &[
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ],
        &[],
    )
    .err()
    .unwrap();
    assert!(
        log.contains("--tls-cert /nonexistent.pem: cannot read"),
        "{log}"
    );
    let c = dir.path().join("chain.pem");
    std::fs::write(&c, &chain).unwrap();
    let log = Atoll::try_start_in(
        &dir.path().join("d"),
        &[
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            dir.path().to_str().unwrap(),
        ],
        &[],
    )
    .err()
    .unwrap();
    assert!(
        log.contains("--tls-key") && log.contains("cannot read"),
        "{log}"
    );
}

fn key_pem() -> Vec<u8> {
    key().private_key_to_pem_pkcs8().unwrap()
}

/// What the README says atoll offers: TLS 1.2, and not TLS 1.3 (native-tls's server profile).
#[test]
fn the_offered_tls_versions_are_what_the_readme_says() {
    use openssl::ssl::{SslConnector, SslMethod, SslVersion};
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = chain();
    let a = start_with_files(dir.path(), &chain, &key).unwrap();
    let handshake = |v: SslVersion| {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_min_proto_version(Some(v)).unwrap();
        b.set_max_proto_version(Some(v)).unwrap();
        b.cert_store_mut()
            .add_cert(X509::from_pem(&ca).unwrap())
            .unwrap();
        let tcp = std::net::TcpStream::connect(a.addr).unwrap();
        b.build()
            .connect("localhost", tcp)
            .map(|s| s.ssl().version_str().to_owned())
    };
    assert_eq!(handshake(SslVersion::TLS1_2).unwrap(), "TLSv1.2");
    assert!(
        handshake(SslVersion::TLS1_3).is_err(),
        "TLS 1.3 is not offered"
    );
    assert!(handshake(SslVersion::TLS1_1).is_err(), "TLS 1.1 is refused");
}

/// A server certificate for `name` (a DNS name or an address), signed by the CA's key. Its
/// common name is no host name: OpenSSL checks one that is against the DNS constraints when a
/// certificate has no DNS name (atoll's own always have `localhost`).
fn leaf_for(name: &str, ca: &X509, ca_key: &PKey<Private>) -> X509 {
    let k = key();
    let mut subject = X509NameBuilder::new().unwrap();
    subject
        .append_entry_by_nid(Nid::COMMONNAME, &format!("test leaf for {name}"))
        .unwrap();
    let subject = subject.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&k).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    if name.parse::<std::net::IpAddr>().is_ok() {
        san.ip(name);
    } else {
        san.dns(name);
    }
    let san = san.build(&b.x509v3_context(Some(ca), None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(ca_key, MessageDigest::sha256()).unwrap();
    b.build()
}

/// What OpenSSL's verification says of `leaf` with only `ca` trusted.
fn verify(ca: &X509, leaf: &X509) -> Result<(), String> {
    let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
    store.add_cert(ca.clone()).unwrap();
    let store = store.build();
    let mut ctx = openssl::x509::X509StoreContext::new().unwrap();
    let chain = openssl::stack::Stack::new().unwrap();
    ctx.init(&store, leaf, &chain, |c| {
        Ok(match c.verify_cert()? {
            true => Ok(()),
            false => Err(c.error().error_string().to_owned()),
        })
    })
    .unwrap()
}

/// The permitted names of a certificate's NameConstraints, as `openssl x509 -text` shows them,
/// and whether the extension is critical.
fn name_constraints(ca: &X509) -> (Vec<String>, bool) {
    let text = String::from_utf8(ca.to_text().unwrap()).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 Name Constraints"));
    let critical = lines.next().is_some_and(|l| l.ends_with("critical"));
    assert_eq!(lines.next().map(str::trim), Some("Permitted:"), "{text}");
    let names = lines
        .take_while(|l| l.starts_with("                  "))
        .map(|l| l.trim().to_owned())
        .collect();
    (names, critical)
}

#[test]
fn the_generated_ca_vouches_only_for_its_names_and_is_made_anew_when_they_grow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--tls-auto", "--hostname", "registry.test"];
    let a = Atoll::try_start_in(&data, &args, &[]).unwrap();
    let read = |f: &str| std::fs::read(data.join("tls").join(f)).unwrap();
    let ca_pem = read("ca.crt");
    let ca = X509::from_pem(&ca_pem).unwrap();
    let ca_key = PKey::private_key_from_pem(&read("ca.key")).unwrap();
    let v6 = "IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF";
    assert_eq!(
        name_constraints(&ca),
        (
            vec![
                "DNS:registry.test".to_owned(),
                "DNS:localhost".to_owned(),
                "IP:127.0.0.1/255.255.255.255".to_owned(),
                v6.to_owned(),
            ],
            true
        )
    );
    // Whoever holds ca.key can sign only for those names.
    for name in ["registry.test", "localhost", "127.0.0.1", "::1"] {
        assert_eq!(verify(&ca, &leaf_for(name, &ca, &ca_key)), Ok(()), "{name}");
    }
    for name in ["bank.example", "registry.test.example", "10.0.0.1"] {
        let refused = verify(&ca, &leaf_for(name, &ca, &ca_key)).unwrap_err();
        assert_eq!(refused, "permitted subtree violation", "{name}");
    }
    let a = a.trust(ca_pem.clone(), "localhost");
    a.get("/v2/").expect(200, None);

    // A name the CA was not made for: a new CA (new key), said so in the log.
    let grown = [
        "--tls-auto",
        "--hostname",
        "registry.test",
        "--hostname",
        "other.test",
    ];
    let a = a.restart(&grown);
    let new_pem = read("ca.crt");
    assert_ne!(new_pem, ca_pem);
    let log = a.log();
    assert!(
        log.contains("made a new CA")
            && log.contains("not for other.test")
            && log.contains("every client must now trust the new ca.crt"),
        "{log}"
    );
    let new_ca = X509::from_pem(&new_pem).unwrap();
    assert!(name_constraints(&new_ca)
        .0
        .contains(&"DNS:other.test".to_owned()));
    assert!(!new_ca.public_key().unwrap().public_eq(&ca_key));
    let a = a.trust(new_pem.clone(), "localhost");
    a.get("/v2/").expect(200, None);
    let stale = a.trust(ca_pem, "localhost");
    let refused = stale.req(http_types::Method::Get, "/v2/").try_send();
    assert!(refused.is_err(), "a client still trusting the old CA");

    // Fewer names than the CA covers change nothing.
    let a = stale.restart(&args);
    assert_eq!(read("ca.crt"), new_pem);
    assert!(!a.log().contains("new CA"), "{}", a.log());
}
