//! `atoll --import-spool DIR`: the hands-off import the systemd path unit starts. Every bundle
//! (file or directory) in `DIR/incoming/` is imported once it has stopped changing, then moved
//! to `DIR/done/`, or to `DIR/failed/` with its error beside it in `NAME.error`. The run ends
//! when `incoming/` is empty, so the path unit (`DirectoryNotEmpty=`) starts it again only for
//! what arrives later. `done/` and `failed/` sit beside `incoming/`, not inside it, for the same
//! reason.
//!
//! Only regular files and directories are bundles. Anything else in `incoming/` (a FIFO, a
//! socket, a device, a symbolic link) goes to `failed/` with the reason, judged by
//! `symlink_metadata` before anything opens it: opening a FIFO waits for a writer, and would
//! hold up every bundle behind it; a link could point anywhere atoll's user can read.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{import, stream};
use crate::error::{Error, IoContext, Result};
use crate::registry::Registry;

/// The spool's three directories.
pub struct Spool {
    pub incoming: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Spool> {
        let s = Spool {
            incoming: dir.join("incoming"),
            done: dir.join("done"),
            failed: dir.join("failed"),
        };
        for d in [&s.incoming, &s.done, &s.failed] {
            fs::create_dir_all(d).at("creating", d)?;
        }
        Ok(s)
    }
}

pub fn run(registry: &Registry, dir: &Path, settle: Duration) -> Result<()> {
    let spool = Spool::open(dir)?;
    let mut tried: HashSet<OsString> = HashSet::new();
    let (mut total, mut failures) = (0, 0);
    while let Some(name) = next(&spool.incoming, &tried)? {
        let path = spool.incoming.join(&name);
        let kind = match fs::symlink_metadata(&path) {
            Ok(m) => m.file_type(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io_at("reading", &path, e)),
        };
        if let Some(what) = stream::special_kind(kind) {
            tried.insert(name);
            (total, failures) = (total + 1, failures + 1);
            let why = format!(
                "{}: {what}, not a bundle: the spool takes regular files and directories only \
                 (copy or move the bundle itself into {})",
                path.display(),
                spool.incoming.display()
            );
            park(&path, &spool.failed, &why)?;
            continue;
        }
        if !wait_until_settled(&path, settle)? {
            continue;
        }
        tried.insert(name.clone());
        total += 1;
        match import::import(registry, &path, None) {
            Ok(report) => {
                println!("{report}");
                move_into(&path, &spool.done)?;
            }
            Err(e) => {
                failures += 1;
                park(&path, &spool.failed, &e.to_string())?;
            }
        }
    }
    if failures > 0 {
        return Err(Error::Bundle(format!(
            "{failures} of {total} bundle(s) failed; each is in {} beside its .error file",
            spool.failed.display()
        )));
    }
    Ok(())
}

/// Moves a bundle that failed into `failed/`, its reason beside it in `NAME.error`.
fn park(path: &Path, failed: &Path, why: &str) -> Result<()> {
    eprintln!("atoll: {why}");
    let dest = move_into(path, failed)?;
    let mut note = dest.into_os_string();
    note.push(".error");
    fs::write(&note, format!("{why}\n")).at("writing", Path::new(&note))
}

/// The first entry of `incoming/` by name not tried in this run.
fn next(incoming: &Path, tried: &HashSet<OsString>) -> Result<Option<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(incoming)
        .at("listing", incoming)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .at("listing", incoming)?;
    names.sort();
    Ok(names.into_iter().find(|n| !tried.contains(n)))
}

/// Waits until nothing under `path` has changed for `settle`; false if it went away.
fn wait_until_settled(path: &Path, settle: Duration) -> Result<bool> {
    loop {
        let Some(newest) = newest_change(path)? else {
            return Ok(false);
        };
        let age = SystemTime::now()
            .duration_since(newest)
            .unwrap_or(Duration::ZERO);
        if age >= settle {
            return Ok(true);
        }
        std::thread::sleep((settle - age).max(Duration::from_millis(100)));
    }
}

/// The latest modification time of `path` or anything under it; `None` if it is gone.
fn newest_change(path: &Path) -> Result<Option<SystemTime>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io_at("reading", path, e)),
    };
    let mut newest = meta.modified().at("reading", path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).at("listing", path)? {
            let entry = entry.at("listing", path)?;
            if let Some(t) = newest_change(&entry.path())? {
                newest = newest.max(t);
            }
        }
    }
    Ok(Some(newest))
}

/// Moves `path` into `dir`, under a new name if its own is taken there. Returns where it went.
fn move_into(path: &Path, dir: &Path) -> Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_owned();
    let mut dest = dir.join(&name);
    let mut n = 1;
    while fs::symlink_metadata(&dest).is_ok() {
        let mut numbered = name.clone();
        numbered.push(format!(".{n}"));
        dest = dir.join(numbered);
        n += 1;
    }
    fs::rename(path, &dest).at("moving the bundle to", &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_gets_a_number() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(&b).unwrap();
        for i in 0..2 {
            fs::write(&a, format!("{i}")).unwrap();
            let dest = move_into(&a, &b).unwrap();
            assert!(dest.starts_with(&b));
        }
        let mut names: Vec<String> = fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["a", "a.1"]);
    }

    #[test]
    fn a_fresh_file_is_waited_for_and_a_vanished_one_skipped() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("bundle.tar");
        fs::write(&f, b"x").unwrap();
        let start = std::time::Instant::now();
        assert!(wait_until_settled(&f, Duration::from_millis(300)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert!(!wait_until_settled(&t.path().join("gone"), Duration::ZERO).unwrap());
    }
}
