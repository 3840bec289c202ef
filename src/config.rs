//! The validated configuration: command-line flags, else `ATOLL_*` environment variables, else
//! the embedded defaults. Everything is checked here, before any socket is opened, and a
//! problem is one line that names the flag (and the file, for files). Pure: the environment
//! is passed in as a function.

use std::net::SocketAddr;
use std::path::PathBuf;

use log::LevelFilter;

use crate::cli::Args;
use crate::error::{Error, Result};

pub const DEFAULT_DATA_DIR: &str = "./atoll-data";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5000";

/// What this run of atoll does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Version,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub log_level: LevelFilter,
    pub read_only: bool,
    pub no_delete: bool,
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

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl Config {
    /// Builds the configuration from parsed flags and an environment lookup.
    pub fn from_args(args: Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let src = Sources { env };
        let mode = if args.version {
            Mode::Version
        } else {
            Mode::Serve
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
        Ok(Config {
            mode,
            data_dir,
            listen,
            log_level,
            read_only: src.switch(args.read_only, "ATOLL_READ_ONLY")?,
            no_delete: src.switch(args.no_delete, "ATOLL_NO_DELETE")?,
        })
    }
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
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(args: Args, env: &[(&str, &str)]) -> Result<Config> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_args(args, &move |k| env.get(k).cloned())
    }

    #[test]
    fn embedded_defaults_serve_on_5000_beside_the_binary() {
        let c = config(Args::default(), &[]).unwrap();
        assert_eq!(c.mode, Mode::Serve);
        assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./atoll-data"));
        assert_eq!(c.log_level, LevelFilter::Info);
        assert!(!c.read_only && !c.no_delete);
    }

    #[test]
    fn environment_fills_in_and_flags_win() {
        let env = [
            ("ATOLL_LISTEN", "127.0.0.1:7000"),
            ("ATOLL_DATA_DIR", "/srv/a"),
            ("ATOLL_NO_DELETE", "yes"),
        ];
        let c = config(Args::default(), &env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/srv/a"));
        assert!(c.no_delete);
        let args = Args {
            listen: Some(":9000".into()),
            ..Args::default()
        };
        let c = config(args, &env).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn bad_values_name_their_source() {
        let args = Args {
            listen: Some("nowhere".into()),
            ..Args::default()
        };
        let e = config(args, &[]).unwrap_err().to_string();
        assert!(e.starts_with("--listen: \"nowhere\""), "{e}");
        let e = config(Args::default(), &[("ATOLL_LOG_LEVEL", "loud")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ATOLL_LOG_LEVEL: \"loud\""), "{e}");
        let e = config(Args::default(), &[("ATOLL_READ_ONLY", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ATOLL_READ_ONLY"), "{e}");
    }
}
