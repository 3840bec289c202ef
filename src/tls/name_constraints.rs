//! The X.509 NameConstraints extension (RFC 5280, 4.2.1.10) of the CA `--tls-auto` makes:
//! written as DER for the names the CA is for, and read back from a certificate to tell which
//! names an existing CA may vouch for. Pure.
//!
//! Why by hand: the openssl crate has no builder for this extension (only the deprecated
//! config-string constructor) and no way to read it back; the two DER shapes involved are small.
//! Only permitted subtrees are written (one per name: a DNS name, or an IP address with a full
//! mask); minimum and maximum are left out, as DER requires for their defaults.

use std::net::IpAddr;

/// The OID of the extension, 2.5.29.30.
pub const OID: &str = "2.5.29.30";
const OID_DER: [u8; 3] = [0x55, 0x1d, 0x1e];

const SEQUENCE: u8 = 0x30;
const PERMITTED: u8 = 0xa0; // [0] IMPLICIT GeneralSubtrees
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT Extensions, in a TBSCertificate
const DNS_NAME: u8 = 0x82; // GeneralName [2] IA5String
const IP_ADDRESS: u8 = 0x87; // GeneralName [7] OCTET STRING
const OBJECT_ID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;

/// The extension's value: every name a permitted subtree.
pub fn der(names: &[String]) -> Vec<u8> {
    let subtrees: Vec<u8> = names
        .iter()
        .flat_map(|n| tlv(SEQUENCE, &general_name(n)))
        .collect();
    tlv(SEQUENCE, &tlv(PERMITTED, &subtrees))
}

fn general_name(name: &str) -> Vec<u8> {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => tlv(IP_ADDRESS, &[&a.octets()[..], &[0xff; 4]].concat()),
        Ok(IpAddr::V6(a)) => tlv(IP_ADDRESS, &[&a.octets()[..], &[0xff; 16]].concat()),
        Err(_) => tlv(DNS_NAME, name.as_bytes()),
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The permitted names of a certificate's NameConstraints (DER of the whole certificate), as
/// text: DNS names as written, addresses with a full mask as addresses (`10.0.0.0/8` style
/// subtrees, which atoll never writes, come out as something no name equals). `None` when the
/// certificate has no such extension, or cannot be read.
pub fn permitted(cert: &[u8]) -> Option<Vec<String>> {
    let (_, certificate, _) = take(cert)?;
    let (_, tbs, _) = take(certificate)?;
    let mut fields = tbs;
    let extensions = loop {
        let (tag, content, rest) = take(fields)?;
        if tag == EXTENSIONS {
            break take(content)?.1;
        }
        fields = rest;
    };
    let value = each(extensions).find_map(|ext| {
        let (tag, oid, rest) = take(ext)?;
        if tag != OBJECT_ID || oid != OID_DER {
            return None;
        }
        let (mut tag, mut value, rest) = take(rest)?;
        if tag == BOOLEAN {
            (tag, value, _) = take(rest)?;
        }
        (tag == OCTET_STRING).then_some(value)
    })?;
    let (_, constraints, _) = take(value)?;
    let mut names = Vec::new();
    for (tag, subtrees) in each_tagged(constraints) {
        if tag != PERMITTED {
            continue;
        }
        for subtree in each(subtrees) {
            let (tag, base, _) = take(subtree)?;
            names.push(match tag {
                DNS_NAME => String::from_utf8_lossy(base).into_owned(),
                IP_ADDRESS => ip_text(base),
                other => format!("(a name of type {})", other & 0x1f),
            });
        }
    }
    Some(names)
}

fn ip_text(b: &[u8]) -> String {
    let full = |mask: &[u8]| mask.iter().all(|m| *m == 0xff);
    match b.len() {
        8 if full(&b[4..]) => IpAddr::from(<[u8; 4]>::try_from(&b[..4]).unwrap()).to_string(),
        32 if full(&b[16..]) => IpAddr::from(<[u8; 16]>::try_from(&b[..16]).unwrap()).to_string(),
        _ => format!("(an address range of {} bytes)", b.len()),
    }
}

/// Whether a CA permitted `permitted` may vouch for `name`: an address must be listed; a DNS
/// name must be listed or lie under one listed (what a DNS name constraint means).
pub fn covers(permitted: &[String], name: &str) -> bool {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return permitted.iter().any(|p| p.parse::<IpAddr>() == Ok(ip));
    }
    let name = name.to_ascii_lowercase();
    permitted.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        p.parse::<IpAddr>().is_err() && (name == p || name.ends_with(&format!(".{p}")))
    })
}

/// One DER element: its tag, its content and what follows it. `None` when it is cut short or
/// its length is not one DER allows here.
fn take(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| a << 8 | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The contents of the elements of a SEQUENCE OF, each a SEQUENCE.
fn each(mut input: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (_, content, rest) = take(input)?;
        input = rest;
        Some(content)
    })
}

/// The elements of a SEQUENCE with their tags.
fn each_tagged(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, content, rest) = take(input)?;
        input = rest;
        Some((tag, content))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_extension_is_the_der_rfc_5280_describes() {
        // SEQUENCE { [0] { SEQUENCE { [2] "a.lan" }, SEQUENCE { [7] 10.0.0.5/32 } } }
        let want: Vec<u8> = [
            &[0x30, 0x17, 0xa0, 0x15][..],
            &[0x30, 0x07, 0x82, 0x05],
            b"a.lan",
            &[0x30, 0x0a, 0x87, 0x08, 10, 0, 0, 5, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat();
        assert_eq!(der(&names(&["a.lan", "10.0.0.5"])), want);
        assert_eq!(tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn a_name_is_covered_by_itself_or_a_domain_above_it() {
        let p = names(&["registry.lan", "127.0.0.1", "::1"]);
        assert!(covers(&p, "registry.lan"));
        assert!(covers(&p, "REGISTRY.lan"));
        assert!(covers(&p, "a.registry.lan"));
        assert!(!covers(&p, "evilregistry.lan"));
        assert!(!covers(&p, "other.lan"));
        assert!(covers(&p, "0:0:0:0:0:0:0:1"));
        assert!(!covers(&p, "127.0.0.2"));
        assert!(!covers(&names(&["127.0.0.1"]), "127.0.0.1.example"));
    }

    #[test]
    fn cut_or_absurd_der_reads_as_nothing() {
        assert_eq!(permitted(&[]), None);
        assert_eq!(permitted(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(permitted(&[0x30, 0x03, 0x30, 0x01]), None);
        assert_eq!(take(&[0x04, 0x02, 1]), None);
    }
}
