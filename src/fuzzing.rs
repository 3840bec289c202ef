//! Entry points for the fuzz targets (`fuzz/`), and for the test that replays their corpus on
//! stable (`tests/it/fuzz_regressions.rs`): each takes arbitrary bytes, calls one parser of
//! untrusted input, and panics only if that parser panics or breaks a promise it makes.
//! Not part of atoll's interface.

use std::path::Path;
use std::str::FromStr;

use crate::digest::Digest;
use crate::http::route::Endpoint;
use crate::range::{parse_content_range, parse_range, RangeRequest};
use crate::reference::{Reference, RepoName, Tag};
use crate::registry::{Options, Registry};

/// The manifest parser, under each content type a client may send.
pub fn manifest(data: &[u8]) {
    let types = [
        None,
        Some("application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        Some("application/vnd.docker.distribution.manifest.list.v2+json"),
        Some("application/json"),
    ];
    let (kind, body) = data.split_first().map_or((0, data), |(k, b)| (*k, b));
    let _ = crate::manifest::parse(body, types[kind as usize % types.len()]);
}

/// Repository names, tags, references, digests, and the router over a path built from them.
/// A name that parses never leaves its place: no empty, `.` or `..` segment, no `\`.
pub fn reference(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(name) = RepoName::from_str(&s) {
        let n = name.as_str();
        assert!(
            !n.starts_with('/') && !n.contains('\\'),
            "name {n:?} parsed"
        );
        assert!(
            n.split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".."),
            "name {n:?} parsed"
        );
    }
    let _ = Tag::from_str(&s);
    let _ = Reference::from_str(&s);
    if let Ok(d) = Digest::from_str(&s) {
        assert!(
            d.hex().bytes().all(|c| c.is_ascii_hexdigit()),
            "digest {s:?} parsed"
        );
    }
    let (path, query) = s.split_once('?').map_or((&*s, None), |(p, q)| (p, Some(q)));
    for method in [
        http_types::Method::Get,
        http_types::Method::Put,
        http_types::Method::Post,
    ] {
        let _ = Endpoint::parse(&method, path, query);
        let _ = Endpoint::parse(&method, &format!("/v2/{path}"), query);
    }
}

/// `Range` (for a blob of a size taken from the first 8 bytes) and `Content-Range`. A range
/// atoll serves lies inside the blob; an upload range is in order.
pub fn range(data: &[u8]) {
    let (size, header) = if data.len() >= 8 {
        let (a, b) = data.split_at(8);
        (u64::from_le_bytes(a.try_into().unwrap()) >> (a[0] % 64), b)
    } else {
        (data.len() as u64, data)
    };
    let header = String::from_utf8_lossy(header);
    if let RangeRequest::Partial(r) = parse_range(Some(&header), size) {
        assert!(
            r.start <= r.end && r.end < size,
            "{header:?} of {size}: {r:?}"
        );
    }
    if let Ok(r) = parse_content_range(&header) {
        assert!(r.start <= r.end, "{header:?}: {r:?}");
    }
}

/// The htpasswd parser.
pub fn htpasswd(data: &[u8]) {
    let _ = crate::auth::htpasswd::parse(&String::from_utf8_lossy(data));
}

/// The bundle reader: `data` as a bundle file imported into the registry at `dir` (created if
/// needed; the caller removes it); returns how many images it imported, or why not. An import that fails leaves nothing in `tmp/`, and nothing
/// is ever written outside `dir`'s `blobs/`, `tmp/` and index.
pub fn bundle(dir: &Path, data: &[u8]) -> Result<usize, String> {
    let registry = Registry::open(
        &dir.join("data"),
        Options {
            touch_interval: 60,
            eviction_grace: 60,
            ..Default::default()
        },
    )
    .expect("opening the fuzzing registry");
    let file = dir.join("bundle.tar");
    std::fs::write(&file, data).expect("writing the bundle");
    let result = crate::bundle::import::import(&registry, &file, None)
        .map(|r| r.images)
        .map_err(|e| e.to_string());
    let left: Vec<_> = std::fs::read_dir(dir.join("data/tmp"))
        .expect("tmp/")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{result:?} left {left:?} in tmp/");
    let outside: Vec<_> = std::fs::read_dir(dir)
        .expect("fuzz dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "data" && n != "bundle.tar")
        .collect();
    assert!(outside.is_empty(), "the import wrote {outside:?}");
    result
}
