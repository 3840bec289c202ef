//! The bundle modes as the command line asks for them: `--import`, `--import-spool`,
//! `--export`, `--inventory`, checked completely before anything is opened. Pure.
//!
//! Mode switches are read from the command line only, never from `ATOLL_*` variables: the
//! server and the import service share `/etc/atoll/atoll.env`, and a variable there must not be
//! able to turn the server into an importer.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Args;
use crate::error::{Error, Result};
use crate::reference::{RepoName, Tag};

/// How long a spooled bundle must stay unchanged before it is imported, by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

/// A bundle mode and its validated arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    Import {
        paths: Vec<PathBuf>,
        name: Option<ImageName>,
    },
    ImportSpool {
        dir: PathBuf,
        settle: Duration,
    },
    Export {
        images: Vec<ImageName>,
        output: Output,
        format: Format,
        exclude_from: Option<PathBuf>,
    },
    Inventory {
        output: Output,
    },
    /// `--copy-from DIR`: another data directory's registry into this one (`copy.rs`).
    CopyFrom {
        dir: PathBuf,
    },
}

/// `NAME` or `NAME:TAG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageName {
    pub repo: RepoName,
    pub tag: Option<Tag>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
}

/// What `--export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout in a tar (skopeo `oci-archive:`, podman load, atoll --import).
    Oci,
    /// A Docker archive (`docker load`), which is also an OCI layout.
    Docker,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

impl ImageName {
    /// Parses `NAME[:TAG]`; `what` names the flag in errors.
    pub fn parse(s: &str, what: &str) -> Result<ImageName> {
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (s, None),
        };
        let repo = name
            .parse::<RepoName>()
            .map_err(|e| bad(format!("{what} {s:?}: {e}")))?;
        let tag = tag
            .map(|t| t.parse::<Tag>())
            .transpose()
            .map_err(|e| bad(format!("{what} {s:?}: {e}")))?;
        Ok(ImageName { repo, tag })
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{}:{t}", self.repo),
            None => write!(f, "{}", self.repo),
        }
    }
}

fn output(v: &Option<String>) -> Option<Output> {
    v.as_deref().map(|o| match o {
        "-" => Output::Stdout,
        path => Output::File(PathBuf::from(path)),
    })
}

impl Job {
    /// The bundle mode the flags ask for, if any. `env` supplies `ATOLL_SPOOL_SETTLE`.
    pub fn from_args(a: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Job>> {
        let modes: Vec<&str> = [
            (a.import, "--import"),
            (a.import_spool.is_some(), "--import-spool"),
            (a.export, "--export"),
            (a.inventory, "--inventory"),
            (a.copy_from.is_some(), "--copy-from"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        let only = |flag: &str, given: bool, modes_ok: &[&str]| -> Result<()> {
            if given && !modes.iter().any(|m| modes_ok.contains(m)) {
                return Err(bad(format!("{flag} goes with {}", modes_ok.join(" or "))));
            }
            Ok(())
        };
        if modes.len() > 1 {
            return Err(bad(format!("{}: choose one", modes.join(" and "))));
        }
        only("--import-name", a.import_name.is_some(), &["--import"])?;
        only(
            "--spool-settle",
            a.spool_settle.is_some(),
            &["--import-spool"],
        )?;
        only("--output", a.output.is_some(), &["--export", "--inventory"])?;
        only("--format", a.format.is_some(), &["--export"])?;
        only("--exclude-from", a.exclude_from.is_some(), &["--export"])?;
        let Some(&mode) = modes.first() else {
            return match a.paths.first() {
                Some(p) => Err(bad(format!(
                    "unexpected argument {p:?}: bundles to import follow --import, images to \
                     export follow --export"
                ))),
                None => Ok(None),
            };
        };
        if !a.paths.is_empty() && !matches!(mode, "--import" | "--export") {
            return Err(bad(format!("{mode} takes no arguments ({:?})", a.paths[0])));
        }
        let job = match mode {
            "--import" => import(a)?,
            "--import-spool" => spool(a, env)?,
            "--export" => export(a)?,
            "--copy-from" => match a.copy_from.as_deref() {
                Some("") | None => return Err(bad("--copy-from needs a data directory")),
                Some(dir) => Job::CopyFrom {
                    dir: PathBuf::from(dir),
                },
            },
            _ => Job::Inventory {
                output: output(&a.output).unwrap_or(Output::Stdout),
            },
        };
        Ok(Some(job))
    }
}

fn import(a: &Args) -> Result<Job> {
    if a.paths.is_empty() {
        return Err(bad(
            "--import needs at least one bundle: atoll --import PATH...",
        ));
    }
    let name = a
        .import_name
        .as_deref()
        .map(|n| ImageName::parse(n, "--import-name"))
        .transpose()?;
    Ok(Job::Import {
        paths: a.paths.iter().map(PathBuf::from).collect(),
        name,
    })
}

fn spool(a: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Job> {
    let dir = PathBuf::from(a.import_spool.clone().unwrap_or_default());
    if dir.as_os_str().is_empty() {
        return Err(bad("--import-spool needs a directory"));
    }
    let settle = match a
        .spool_settle
        .clone()
        .map(|v| (v, "--spool-settle"))
        .or_else(|| env("ATOLL_SPOOL_SETTLE").map(|v| (v, "ATOLL_SPOOL_SETTLE")))
        .filter(|(v, _)| !v.is_empty())
    {
        None => DEFAULT_SETTLE,
        Some((v, from)) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| bad(format!("{from}: {v:?} is not a number of seconds")))?,
    };
    Ok(Job::ImportSpool { dir, settle })
}

fn export(a: &Args) -> Result<Job> {
    if a.paths.is_empty() {
        return Err(bad(
            "--export needs at least one image: atoll --export NAME[:TAG]... --output FILE",
        ));
    }
    let images = a
        .paths
        .iter()
        .map(|p| ImageName::parse(p, "--export"))
        .collect::<Result<Vec<_>>>()?;
    let output = output(&a.output)
        .ok_or_else(|| bad("--export needs --output FILE (or --output - for standard output)"))?;
    let format = match a.format.as_deref() {
        None | Some("oci") => Format::Oci,
        Some("docker") => Format::Docker,
        Some(other) => return Err(bad(format!("--format {other:?}: expected oci or docker"))),
    };
    if format == Format::Docker && a.exclude_from.is_some() {
        return Err(bad(
            "--exclude-from makes a delta bundle, which only atoll --import can complete: use --format oci",
        ));
    }
    Ok(Job::Export {
        images,
        output,
        format,
        exclude_from: a.exclude_from.as_deref().map(PathBuf::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(a: Args) -> Result<Option<Job>> {
        Job::from_args(&a, &|_| None)
    }

    fn err(a: Args) -> String {
        job(a).unwrap_err().to_string()
    }

    #[test]
    fn no_bundle_flag_is_no_bundle_mode() {
        assert_eq!(job(Args::default()).unwrap(), None);
        let e = err(Args {
            paths: vec!["x.tar".into()],
            ..Args::default()
        });
        assert!(e.contains("unexpected argument \"x.tar\""), "{e}");
    }

    #[test]
    fn import_takes_paths_and_a_name() {
        let j = job(Args {
            import: true,
            paths: vec!["a.tar".into(), "dir".into()],
            import_name: Some("edge/app:1.2".into()),
            ..Args::default()
        })
        .unwrap()
        .unwrap();
        let Job::Import { paths, name } = j else {
            panic!("{j:?}")
        };
        assert_eq!(paths, vec![PathBuf::from("a.tar"), PathBuf::from("dir")]);
        let name = name.unwrap();
        assert_eq!(name.to_string(), "edge/app:1.2");
        assert!(err(Args {
            import: true,
            ..Args::default()
        })
        .contains("at least one bundle"));
        assert!(err(Args {
            import: true,
            paths: vec!["a".into()],
            import_name: Some("Bad/Name".into()),
            ..Args::default()
        })
        .starts_with("--import-name \"Bad/Name\""));
    }

    #[test]
    fn export_needs_output_and_a_known_format() {
        let base = Args {
            export: true,
            paths: vec!["app".into(), "lib/x:2".into()],
            output: Some("-".into()),
            ..Args::default()
        };
        let j = job(base.clone_for_test()).unwrap().unwrap();
        assert_eq!(
            j,
            Job::Export {
                images: vec![
                    ImageName::parse("app", "").unwrap(),
                    ImageName::parse("lib/x:2", "").unwrap()
                ],
                output: Output::Stdout,
                format: Format::Oci,
                exclude_from: None,
            }
        );
        let mut a = base.clone_for_test();
        a.output = None;
        assert!(err(a).contains("--export needs --output"));
        let mut a = base.clone_for_test();
        a.format = Some("tgz".into());
        assert!(err(a).contains("expected oci or docker"));
        let mut a = base.clone_for_test();
        a.format = Some("docker".into());
        a.exclude_from = Some("inv".into());
        assert!(err(a).contains("use --format oci"));
    }

    #[test]
    fn modes_and_their_flags_do_not_mix() {
        let e = err(Args {
            import: true,
            export: true,
            paths: vec!["a".into()],
            ..Args::default()
        });
        assert!(e.contains("--import and --export: choose one"), "{e}");
        let e = err(Args {
            inventory: true,
            format: Some("oci".into()),
            ..Args::default()
        });
        assert!(e.contains("--format goes with --export"), "{e}");
        let e = err(Args {
            inventory: true,
            paths: vec!["x".into()],
            ..Args::default()
        });
        assert!(e.contains("--inventory takes no arguments"), "{e}");
    }

    #[test]
    fn spool_settle_comes_from_the_flag_or_the_environment() {
        let a = Args {
            import_spool: Some("/var/lib/atoll-import".into()),
            ..Args::default()
        };
        let env = |k: &str| (k == "ATOLL_SPOOL_SETTLE").then(|| "0".to_owned());
        assert_eq!(
            Job::from_args(&a, &env).unwrap(),
            Some(Job::ImportSpool {
                dir: "/var/lib/atoll-import".into(),
                settle: Duration::ZERO
            })
        );
        let a = Args {
            import_spool: Some("d".into()),
            spool_settle: Some("soon".into()),
            ..Args::default()
        };
        assert!(err(a).starts_with("--spool-settle: \"soon\""));
    }

    impl Args {
        fn clone_for_test(&self) -> Args {
            Args {
                export: self.export,
                paths: self.paths.clone(),
                output: self.output.clone(),
                format: self.format.clone(),
                exclude_from: self.exclude_from.clone(),
                ..Args::default()
            }
        }
    }
}
