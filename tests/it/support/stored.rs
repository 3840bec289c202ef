//! What the blob store holds for a data directory, whichever engine the suite runs on: files
//! under `DIR/blobs/`, or, on the object store, the test bucket's objects under the directory's
//! prefix (`support::object_store`). Tests that look at, damage or remove a blob's bytes go
//! through here, so they check the same thing on both engines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atoll::s3::{S3Config, S3Flags, S3};

/// `blobs/sha256/ab/abcd...` for `sha256:abcd...`: the key of a blob on both engines.
pub fn blob_key(digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').expect("a digest");
    format!("blobs/{alg}/{}/{hex}", &hex[..2])
}

/// The test bucket, as the registry on `dir` sees it; `None` on the disk engine.
fn bucket(dir: &Path) -> Option<S3> {
    let mut cmd = std::process::Command::new("true");
    super::object_store(&mut cmd, dir);
    bucket_of(&cmd)
}

/// The bucket (and prefix) an atoll run by `cmd` keeps its blobs in, from the `ATOLL_BLOB_STORE`
/// and `ATOLL_S3_*` of its environment; `None` if it names none.
pub fn bucket_of(cmd: &std::process::Command) -> Option<S3> {
    let env: std::collections::HashMap<String, String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    let flags = S3Flags {
        store: env.get("ATOLL_BLOB_STORE")?.clone(),
        endpoint: env.get("ATOLL_S3_ENDPOINT").cloned(),
        region: env.get("ATOLL_S3_REGION").cloned(),
        ..S3Flags::default()
    };
    let config = S3Config::parse(&flags, &|k| env.get(k).cloned()).expect("the test bucket");
    Some(S3::new(&config, Arc::new(atoll::net::Http::new())).expect("the test bucket"))
}

fn file(dir: &Path, digest: &str) -> PathBuf {
    dir.join(blob_key(digest))
}

/// The blob's bytes as stored, if there are any.
pub fn read(dir: &Path, digest: &str) -> Option<Vec<u8>> {
    match bucket(dir) {
        Some(s3) => smol::block_on(s3.get_small(&blob_key(digest))).expect("reading the bucket"),
        None => std::fs::read(file(dir, digest)).ok(),
    }
}

pub fn exists(dir: &Path, digest: &str) -> bool {
    match bucket(dir) {
        Some(s3) => smol::block_on(s3.head(&blob_key(digest)))
            .expect("asking the bucket")
            .is_some(),
        None => file(dir, digest).exists(),
    }
}

/// Writes or replaces the blob's stored bytes (damage, or a file no row names, for tests of
/// what the registry does about it).
pub fn write(dir: &Path, digest: &str, bytes: &[u8]) {
    match bucket(dir) {
        Some(s3) => smol::block_on(s3.put(&blob_key(digest), bytes.to_vec().into()))
            .expect("writing the bucket"),
        None => {
            let path = file(dir, digest);
            std::fs::create_dir_all(path.parent().unwrap()).expect("making the blob's directory");
            std::fs::write(path, bytes).expect("writing the blob file");
        }
    }
}

/// Removes the blob's stored bytes.
pub fn remove(dir: &Path, digest: &str) {
    match bucket(dir) {
        Some(s3) => smol::block_on(s3.delete(&blob_key(digest))).expect("deleting in the bucket"),
        None => std::fs::remove_file(file(dir, digest)).expect("removing the blob file"),
    }
}

/// Every object of the bucket under the directory's prefix, by key, with its bytes (empty on
/// the disk engine, whose files `support::snapshot` reads itself).
pub fn objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Some(s3) = bucket(dir) else {
        return Vec::new();
    };
    smol::block_on(async {
        let mut out = Vec::new();
        for o in s3.list("").await.expect("listing the bucket") {
            let bytes = s3.get_small(&o.key).await.expect("reading the bucket");
            out.push((o.key, bytes.unwrap_or_default()));
        }
        out
    })
}

/// Unfinished multipart uploads in the bucket under the directory's prefix (0 on the disk).
pub fn pending_uploads(dir: &Path) -> usize {
    match bucket(dir) {
        Some(s3) => smol::block_on(s3.pending_uploads(""))
            .expect("listing the bucket's uploads")
            .len(),
        None => 0,
    }
}

/// The test bucket of the registry on `dir`, to put things in it behind the registry's back.
pub fn test_bucket(dir: &Path) -> S3 {
    bucket(dir).expect("the suite runs on the object store")
}
