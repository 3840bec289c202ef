//! The command line, as argh parses it: raw flags only, every one optional so that `config.rs`
//! can tell "not given" from a value and fall back to the flag's `ATOLL_*` environment
//! variable (a flag on the command line wins). Validation happens in `config.rs`.

use argh::FromArgs;

/// atoll: a container image registry in one file, for edge sites and air-gapped networks.
/// With no mode flag it serves the OCI distribution API. Every flag also reads the environment
/// variable named after it (--data-dir: ATOLL_DATA_DIR); the flag wins.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// where blobs and the index live (ATOLL_DATA_DIR; default ./atoll-data)
    #[argh(option)]
    pub data_dir: Option<String>,

    /// address to listen on, HOST:PORT (ATOLL_LISTEN; default 0.0.0.0:5000)
    #[argh(option)]
    pub listen: Option<String>,

    /// error, warn, info or debug (ATOLL_LOG_LEVEL; default info)
    #[argh(option)]
    pub log_level: Option<String>,

    /// refuse every push and delete (ATOLL_READ_ONLY)
    #[argh(switch)]
    pub read_only: bool,

    /// refuse deletes of manifests, tags and blobs (ATOLL_NO_DELETE)
    #[argh(switch)]
    pub no_delete: bool,

    /// print the version and the build's target, then exit
    #[argh(switch)]
    pub version: bool,
}
