//! The command line, as argh parses it: raw flags only, every one optional so that `config.rs`
//! can tell "not given" from a value and fall back to the flag's `ATOLL_*` environment
//! variable (a flag on the command line wins). Validation happens in `config.rs`.

use argh::FromArgs;

/// atoll: a container image registry in one file, for edge sites and air-gapped networks.
/// With no mode flag it serves the OCI distribution API. Every flag also reads the environment
/// variable named after it (--data-dir: ATOLL_DATA_DIR); the flag wins. ATOLL_USERNAME and
/// ATOLL_PASSWORD set up one login without an htpasswd file.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// where blobs and the index live (ATOLL_DATA_DIR; default ./atoll-data)
    #[argh(option)]
    pub data_dir: Option<String>,

    /// where the index of names lives: DATA_DIR/index.db (SQLite), or postgres://USER@HOST[:PORT]/DATABASE shared by several atoll nodes, its password in ATOLL_INDEX_PASSWORD or --index-password-file (ATOLL_INDEX; default DATA_DIR/index.db)
    #[argh(option)]
    pub index: Option<String>,

    /// a file holding the PostgreSQL index's password (ATOLL_INDEX_PASSWORD_FILE)
    #[argh(option)]
    pub index_password_file: Option<String>,

    /// where blobs live: disk (DATA_DIR/blobs) or s3://BUCKET[/PREFIX] (ATOLL_BLOB_STORE; default disk)
    #[argh(option)]
    pub blob_store: Option<String>,

    /// the S3 endpoint for an s3:// --blob-store, e.g. https://s3.eu-west-1.amazonaws.com (ATOLL_S3_ENDPOINT)
    #[argh(option)]
    pub s3_endpoint: Option<String>,

    /// the region requests are signed for (ATOLL_S3_REGION; default us-east-1)
    #[argh(option)]
    pub s3_region: Option<String>,

    /// path (https://HOST/BUCKET/key, any endpoint) or virtual (https://BUCKET.HOST/key) (ATOLL_S3_ADDRESSING; default path)
    #[argh(option)]
    pub s3_addressing: Option<String>,

    /// a file with aws_access_key_id and aws_secret_access_key lines, when ATOLL_S3_ACCESS_KEY_ID / ATOLL_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) are not set (ATOLL_S3_CREDENTIALS_FILE)
    #[argh(option)]
    pub s3_credentials_file: Option<String>,

    /// answer blob GETs with a short-lived presigned URL of the object store, for clients that can reach it (ATOLL_BLOB_REDIRECT)
    #[argh(switch)]
    pub blob_redirect: bool,

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

    /// serve HTTPS with this PEM certificate, full chain accepted (ATOLL_TLS_CERT)
    #[argh(option)]
    pub tls_cert: Option<String>,

    /// the PEM private key of --tls-cert (ATOLL_TLS_KEY)
    #[argh(option)]
    pub tls_key: Option<String>,

    /// serve HTTPS with a CA and a certificate atoll generates in DATA_DIR/tls (ATOLL_TLS_AUTO)
    #[argh(switch)]
    pub tls_auto: bool,

    /// a name clients reach atoll by, for --tls-auto; repeatable (ATOLL_HOSTNAME, comma-separated; default: this machine's host name)
    #[argh(option)]
    pub hostname: Vec<String>,

    /// require logins, checked against this htpasswd file of bcrypt entries (ATOLL_HTPASSWD)
    #[argh(option)]
    pub htpasswd: Option<String>,

    /// let anyone pull; pushes and deletes still need a login (ATOLL_ANONYMOUS_PULL)
    #[argh(switch)]
    pub anonymous_pull: bool,

    /// pull-through cache upstream for names not held here: URL (the default upstream, e.g. https://registry-1.docker.io) or HOST=URL (chosen by ?ns=HOST or a HOST/ name prefix); repeatable (ATOLL_UPSTREAMS, comma-separated)
    #[argh(option)]
    pub upstream: Vec<String>,

    /// credentials for an upstream, HOST=USER:PASSWORD; repeatable (ATOLL_UPSTREAM_CREDENTIALS, comma-separated)
    #[argh(option)]
    pub upstream_credentials: Vec<String>,

    /// a file of HOST=USER:PASSWORD lines, for upstream credentials (ATOLL_UPSTREAM_CREDENTIALS_FILE)
    #[argh(option)]
    pub upstream_credentials_file: Option<String>,

    /// how long a pull by tag waits for the upstream before serving the cached copy (ATOLL_UPSTREAM_TIMEOUT; default 3s)
    #[argh(option)]
    pub upstream_timeout: Option<String>,

    /// cached content not read for this long is evicted (ATOLL_CACHE_TTL; default 7d)
    #[argh(option)]
    pub cache_ttl: Option<String>,

    /// the most the cache may hold, e.g. 50G; the least recently read goes first (ATOLL_CACHE_MAX_BYTES; default: no limit)
    #[argh(option)]
    pub cache_max_bytes: Option<String>,

    /// cached repositories matching this pattern (* matches anything) are never evicted; repeatable (ATOLL_CACHE_PIN, comma-separated)
    #[argh(option)]
    pub cache_pin: Vec<String>,

    /// how often eviction runs (ATOLL_EVICT_INTERVAL; default 1h)
    #[argh(option)]
    pub evict_interval: Option<String>,

    /// run one garbage collection on the data directory and exit (safe while a server runs on it)
    #[argh(switch)]
    pub gc: bool,

    /// with --gc: print what would be deleted, change nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// garbage collection also deletes manifests no tag reaches (never one a kept index names) (ATOLL_DELETE_UNTAGGED)
    #[argh(switch)]
    pub delete_untagged: bool,

    /// nothing created, linked or read more recently is collected, e.g. 30s, 15m, 1h, 7d (ATOLL_GC_GRACE; default 1h)
    #[argh(option)]
    pub gc_grace: Option<String>,

    /// how often the server collects garbage; 0 turns it off (ATOLL_GC_INTERVAL; default 24h)
    #[argh(option)]
    pub gc_interval: Option<String>,

    /// upload sessions older than this are purged at each collection (ATOLL_UPLOAD_TTL; default 24h)
    #[argh(option)]
    pub upload_ttl: Option<String>,

    /// re-hash every blob and check the index against the disk, then exit (1 if anything is wrong)
    #[argh(switch)]
    pub verify: bool,

    /// with --verify: move damaged blobs to DATA_DIR/quarantine so clients get BLOB_UNKNOWN instead of bad bytes
    #[argh(switch)]
    pub repair: bool,

    /// print a file the binary carries (atoll.service, atoll.sysusers, atoll-import.path, atoll-import.service, atoll.env), then exit
    #[argh(option)]
    pub print_file: Option<String>,

    /// print an htpasswd line for USER (bcrypt), reading the password from standard input, then exit
    #[argh(option)]
    pub hash_password: Option<String>,

    /// print the version and the build's target, then exit
    #[argh(switch)]
    pub version: bool,

    // ---- Bundles (bundle/job.rs validates these; mode switches never read the environment) ----
    /// import the bundles named as arguments: OCI layouts (directory or tar), docker archives, gzipped or not
    #[argh(switch)]
    pub import: bool,

    /// with --import: put the images under this repository (NAME) or name:tag (NAME:TAG)
    #[argh(option)]
    pub import_name: Option<String>,

    /// import every bundle that appears in DIR/incoming, then move it to DIR/done or DIR/failed
    #[argh(option)]
    pub import_spool: Option<String>,

    /// with --import-spool: seconds a bundle must stay unchanged before it is imported (ATOLL_SPOOL_SETTLE; default 5)
    #[argh(option)]
    pub spool_settle: Option<String>,

    /// export the images named as arguments (NAME for every tag, NAME:TAG for one) to --output
    #[argh(switch)]
    pub export: bool,

    /// with --export or --inventory: the file to write, or - for standard output
    #[argh(option)]
    pub output: Option<String>,

    /// with --export: oci (an OCI image layout tar, the default) or docker (for docker load)
    #[argh(option)]
    pub format: Option<String>,

    /// with --export: leave out the blobs listed in this file (another atoll's --inventory)
    #[argh(option)]
    pub exclude_from: Option<String>,

    /// print the digest of every blob this registry holds (for --exclude-from), then exit
    #[argh(switch)]
    pub inventory: bool,

    /// copy every repository of the atoll data directory DIR (its index.db and blobs; it may keep serving) into the registry these flags set up, such as a cluster's --index and --blob-store, verified, then exit; run again to resume
    #[argh(option)]
    pub copy_from: Option<String>,

    /// bundles to import, or images to export
    #[argh(positional)]
    pub paths: Vec<String>,
}
