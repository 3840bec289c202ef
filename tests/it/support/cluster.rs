//! Several atoll nodes on one index and one bucket, as a site runs them behind a load balancer:
//! each node its own process and data directory, all on one PostgreSQL database and one prefix
//! of the test bucket, both fresh for each `Cluster`. For tests/it/cluster.rs, which needs the
//! services tests/services/ starts (PostgreSQL and Garage); also here: killing and restarting a
//! node, `atoll --gc` / `--verify` against the cluster, the bucket's blobs, and taking PostgreSQL
//! away under the nodes (`postgres_ctl`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::content::{random_bytes, sha256};
use super::{index, release_bin, stored, Atoll, Client};

/// The services a cluster needs; tests/run.sh's cluster pass sets ATOLL_TEST_CLUSTER=1 with both
/// up, and `require` fails loudly when either is missing.
const SERVICES: &[&str] = &[
    "ATOLL_TEST_PG_HOST",
    "ATOLL_TEST_PG_PORT",
    "ATOLL_TEST_PG_PASSWORD",
    "ATOLL_TEST_PG_DATA",
    "ATOLL_TEST_S3_ENDPOINT",
    "ATOLL_TEST_S3_BUCKET",
    "ATOLL_TEST_S3_REGION",
    "ATOLL_TEST_S3_ACCESS_KEY_ID",
    "ATOLL_TEST_S3_SECRET_ACCESS_KEY",
];

/// Asserts that this run means to run the cluster tests (ATOLL_TEST_CLUSTER=1) and has what they
/// need. Without the variable they fail too, saying how to run or skip them: a cluster test that
/// passed without a cluster would be a test that cannot fail.
pub fn require() {
    assert_eq!(
        std::env::var("ATOLL_TEST_CLUSTER").as_deref(),
        Ok("1"),
        "the cluster tests run in tests/run.sh's cluster pass (ATOLL_TEST_CLUSTER=1, with \
         PostgreSQL and Garage up: tests/services/); elsewhere, pass --skip cluster::"
    );
    for name in SERVICES {
        assert!(
            std::env::var_os(name).is_some(),
            "ATOLL_TEST_CLUSTER=1 but {name} is not set: the cluster tests need PostgreSQL and \
             Garage (source tests/services/postgres.sh and garage.sh, then postgres_start DIR \
             and garage_start DIR; tests/run.sh starts both)"
        );
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (cluster::require)"))
}

/// N atoll nodes sharing a fresh database and a fresh bucket prefix. Dropping it kills them.
pub struct Cluster {
    nodes: Vec<Atoll>,
    args: Vec<String>,
    cli: Cli,
    /// The nodes' index: a database of its own on the test PostgreSQL.
    pub database: String,
    /// Holds `node-I/`, each node's data directory.
    pub temp: tempfile::TempDir,
}

impl Cluster {
    /// `n` nodes of the test build, started with `args`.
    pub fn start(n: usize, args: &[&str]) -> Cluster {
        Cluster::start_bin(Path::new(env!("CARGO_BIN_EXE_atoll")), n, args)
    }

    /// `n` nodes of the build that timings run (`release_bin`).
    pub fn start_release(n: usize, args: &[&str]) -> Cluster {
        Cluster::start_bin(&release_bin(), n, args)
    }

    /// All nodes start at once, so they also race to migrate the fresh database.
    pub fn start_bin(bin: &Path, n: usize, args: &[&str]) -> Cluster {
        require();
        let id = &sha256(&random_bytes(16))["sha256:".len()..][..16];
        let database = format!("atoll_cluster_{id}");
        index::create_database(&database);
        let store = format!("s3://{}/cluster-{id}", var("ATOLL_TEST_S3_BUCKET"));
        let index = format!(
            "postgres://atoll@{}:{}/{database}",
            var("ATOLL_TEST_PG_HOST"),
            var("ATOLL_TEST_PG_PORT")
        );
        let env = vec![
            ("ATOLL_INDEX".to_owned(), index),
            ("ATOLL_INDEX_PASSWORD".into(), var("ATOLL_TEST_PG_PASSWORD")),
            ("ATOLL_BLOB_STORE".into(), store),
            ("ATOLL_S3_ENDPOINT".into(), var("ATOLL_TEST_S3_ENDPOINT")),
            ("ATOLL_S3_REGION".into(), var("ATOLL_TEST_S3_REGION")),
            (
                "ATOLL_S3_ACCESS_KEY_ID".into(),
                var("ATOLL_TEST_S3_ACCESS_KEY_ID"),
            ),
            (
                "ATOLL_S3_SECRET_ACCESS_KEY".into(),
                var("ATOLL_TEST_S3_SECRET_ACCESS_KEY"),
            ),
        ];
        let temp = tempfile::tempdir().expect("temp dir");
        // The command-line modes run on node 0's data directory, as an operator runs them on
        // one of the nodes.
        let node0 = temp.path().join("node-0");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cli: Cli {
                bin: bin.to_owned(),
                env,
                dir: node0,
            },
            database,
            temp,
        };
        cluster.nodes = std::thread::scope(|s| {
            let starting: Vec<_> = (0..n)
                .map(|i| {
                    let c = &cluster;
                    s.spawn(move || c.launch(i))
                })
                .collect();
            starting.into_iter().map(|t| t.join().unwrap()).collect()
        });
        cluster
    }

    /// Node `i`'s data directory.
    pub fn dir(&self, i: usize) -> PathBuf {
        self.temp.path().join(format!("node-{i}"))
    }

    /// Starts node `i` on its data directory, on a port of its own (port 0).
    fn launch(&self, i: usize) -> Atoll {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Atoll::try_start_bin(&self.cli.bin, &self.dir(i), &args, &self.cli.env())
            .unwrap_or_else(|log| panic!("cluster node {i} did not start:\n{log}"))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, i: usize) -> &Atoll {
        &self.nodes[i]
    }

    pub fn nodes(&self) -> &[Atoll] {
        &self.nodes
    }

    /// A client of node `i` that threads can share (it names the node's address of now: a
    /// restart moves the node to another port).
    pub fn client(&self, i: usize) -> Client {
        Client(self.nodes[i].addr)
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|a| a.addr).collect()
    }

    /// SIGKILLs node `i` and starts it again on the same data directory; returns its new
    /// address.
    pub fn kill_and_restart(&mut self, i: usize) -> SocketAddr {
        self.nodes[i].kill();
        self.nodes[i] = self.launch(i);
        self.nodes[i].addr
    }

    /// `atoll ARGS` (`--gc`, `--verify`) against the cluster.
    pub fn cli(&self) -> &Cli {
        &self.cli
    }

    /// Runs `sql` in one transaction on the cluster's database (`index::query`'s output).
    pub fn query(&self, sql: &str) -> String {
        index::query_database(&self.database, sql)
    }

    /// Every object under the cluster's `blobs/` hashes to the digest its key names; returns
    /// how many there are.
    #[track_caller]
    pub fn blobs_are_whole(&self) -> usize {
        let s3 = stored::bucket_of(&self.cli.command(&[])).expect("the cluster's bucket");
        smol::block_on(async {
            let objects = s3.list("blobs/").await.expect("listing the bucket");
            for o in &objects {
                let bytes = s3
                    .get_small(&o.key)
                    .await
                    .expect("reading the bucket")
                    .unwrap_or_default();
                let hex = o.key.rsplit('/').next().unwrap();
                assert_eq!(
                    sha256(&bytes),
                    format!("sha256:{hex}"),
                    "{} holds other bytes than its name says ({} bytes)",
                    o.key,
                    bytes.len()
                );
            }
            objects.len()
        })
    }
}

/// How to run `atoll ARGS` against a cluster (`--gc`, `--verify`), as an operator does on one of
/// its nodes: the nodes' index and bucket, node 0's data directory. A thread may keep a copy
/// while the nodes are killed and restarted.
#[derive(Clone)]
pub struct Cli {
    bin: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Cli {
    /// The same, run on the data directory `dir` (a host that is no node).
    pub fn on(&self, dir: &Path) -> Cli {
        Cli {
            dir: dir.to_owned(),
            ..self.clone()
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env());
        cmd
    }

    /// Runs `atoll ARGS`; returns whether it succeeded, and what it printed (stdout, then
    /// stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = self.command(args).output().expect("running atoll");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// `atoll --verify` must pass: no blob damaged, the index sound. Returns its summary line.
    #[track_caller]
    pub fn verify(&self) -> String {
        let (ok, text) = self.run(&["--verify"]);
        assert!(ok, "atoll --verify failed against the cluster:\n{text}");
        let summary = text
            .lines()
            .find(|l| l.starts_with("verify:"))
            .unwrap_or_else(|| panic!("no summary from atoll --verify:\n{text}"))
            .to_owned();
        assert!(summary.contains(" 0 damaged"), "{text}");
        assert!(summary.ends_with("index: ok"), "{text}");
        summary
    }
}

/// `pg_ctl ARGS` (`stop -m fast`, `start`, `restart -m fast`) on the test PostgreSQL, through
/// tests/services/postgres.sh (which runs it as the server's user); an error holds pg_ctl's
/// words.
pub fn postgres_ctl(args: &[&str]) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services/postgres.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("ctl")
        .args(args)
        .output()
        .map_err(|e| format!("running {script}: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "postgres.sh ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}
