"""The processes the benchmark drives: atoll, the reference registry, a private dockerd, and
the services they may keep their state in (Garage, PostgreSQL).

Owns starting them on loopback with state under bench/work/, waiting for them to answer,
reading their memory and CPU time from /proc, and stopping them by PID. Every PID started is
also written to bench/work/pids, so bench/run.sh's trap can stop what a crashed orchestrator
left behind. Nothing here measures; measures.py does.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from s3 import S3

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


def free_port():
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def http_status(port, path="/v2/", timeout=1.0):
    """Status code of one plain GET on loopback, or None if nothing answers (yet)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
                      "Connection: close\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


def proc_status(pid):
    """VmRSS, VmHWM and RssAnon of a process, in bytes, and its thread count (from
    /proc/PID/status)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon"):
                    out[key] = int(rest.split()[0]) * 1024
                elif key == "Threads":
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """User + system CPU time of a process so far, every thread (/proc/PID/stat), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Pids:
    """The record of every process started, for run.sh's trap."""

    def __init__(self, path):
        self.path = Path(path)

    def add(self, pid):
        with open(self.path, "a") as f:
            f.write(f"{pid}\n")


def stop_pid(pid, wait=10.0):
    """SIGTERM, then SIGKILL if it is still there after `wait` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:  # not our child: poll its existence instead
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class Registry:
    """One registry server: a command line, a port, a data directory, a log file."""

    name = "?"

    def __init__(self, work, pids):
        self.work = Path(work)
        self.pids = pids
        self.proc = None
        self.port = None
        self.data = self.work / f"{self.name}-data"

    # -- what each kind defines ------------------------------------------------------------
    def command(self, data, port):
        raise NotImplementedError

    def env(self):
        """The server's environment (default: the harness's own)."""
        return None

    # -- shared ------------------------------------------------------------------------------
    @property
    def host(self):
        return f"{LOOPBACK}:{self.port}"

    def spawn(self, data, port, log, env_extra=None):
        """Starts the server on `data` and `port` (`env_extra`: variables added to its
        environment); returns (process, seconds from exec to the first 200 on /v2/). Raises if
        it does not answer within 30 s."""
        data = Path(data)
        data.mkdir(parents=True, exist_ok=True)
        cmd = self.command(data, port)
        with open(log, "ab") as logf:
            started = time.perf_counter()
            env = self.env()
            if env_extra:
                env = {**(env or os.environ), **env_extra}
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        self.pids.add(proc.pid)
        deadline = started + 30
        while True:
            status = http_status(port)
            if status == 200:
                return proc, time.perf_counter() - started
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {proc.returncode}; see {log}")
            if time.perf_counter() > deadline:
                stop_pid(proc.pid)
                raise RuntimeError(f"{self.name} did not answer 200 on /v2/ in 30 s; see {log}")
            time.sleep(0.001)

    def start(self, fresh=False):
        """Starts (or restarts) the long-lived instance on its data directory."""
        self.stop()
        if fresh and self.data.exists():
            shutil.rmtree(self.data)
        self.port = self.port or free_port()
        self.proc, _ = self.spawn(self.data, self.port, self.work / f"{self.name}.log")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None

    def memory(self):
        return proc_status(self.proc.pid)


class Atoll(Registry):
    name = "atoll"

    def __init__(self, work, pids, binary, bucket=None, index=None):
        super().__init__(work, pids)
        self.binary = str(binary)
        self.bucket = bucket  # a Bucket: blobs in the object store (--blob-store s3://...)
        self.index = index  # a Postgres: the index in a database of its own (--index); None: SQLite
        self.redirect = False  # --blob-redirect (with a bucket)

    def store_flags(self, bucket=None):
        """The flags that put blobs in `bucket` (default: this instance's), or none (disk)."""
        b = bucket or self.bucket
        if b is None:
            return []
        return ["--blob-store", f"s3://{b.bucket}/{b.prefix}", "--s3-endpoint", b.endpoint,
                "--s3-region", b.region] + (["--blob-redirect"] if self.redirect else [])

    def index_flags(self, data):
        """The flags that put the index of data directory `data` in PostgreSQL (its database,
        made on first use: see Postgres.database_for), or none (SQLite, DATA_DIR/index.db)."""
        if self.index is None:
            return []
        return ["--index", self.index.url(self.index.database_for(data))]

    def env(self):
        if self.bucket is None and self.index is None:
            return None
        env = dict(os.environ)
        if self.bucket is not None:
            env.update(ATOLL_S3_ACCESS_KEY_ID=self.bucket.access_key,
                       ATOLL_S3_SECRET_ACCESS_KEY=self.bucket.secret_key)
        if self.index is not None:
            env["ATOLL_INDEX_PASSWORD"] = self.index.password
        return env

    def command(self, data, port):
        return [self.binary, "--data-dir", str(data), "--listen", f"{LOOPBACK}:{port}",
                "--log-level", "error"] + self.store_flags() + self.index_flags(data)

    def index_cpu_seconds(self):
        """CPU time so far of the index's server (PostgreSQL's processes), 0 on SQLite (its
        work is atoll's own)."""
        return self.index.cpu_seconds() if self.index is not None else 0.0


class OtherAtoll(Atoll):
    """A second atoll binary in the reference's place (bench.py --against): same flags, its
    own data directory and log, reported in the "reference" column."""

    name = "reference"


def reference_storage(data, bucket=None, redirect=False):
    """The `storage:` driver lines of a reference config: the filesystem under `data`, or the
    s3 driver on `bucket` (its prefix as `rootdirectory`; blob GETs stream through the registry
    unless `redirect`, as atoll's do without --blob-redirect)."""
    if bucket is None:
        return f"  filesystem: {{ rootdirectory: {data} }}\n"
    return ("  s3:\n"
            f"    region: {bucket.region}\n"
            f"    regionendpoint: {bucket.endpoint}\n"
            f"    bucket: {bucket.bucket}\n"
            f"    accesskey: {bucket.access_key}\n"
            f"    secretkey: {bucket.secret_key}\n"
            "    secure: false\n"
            "    v4auth: true\n"
            f"    rootdirectory: /{bucket.prefix}\n"
            f"  redirect: {{ disable: {'false' if redirect else 'true'} }}\n")


class Reference(Registry):
    """CNCF distribution 2.8 (Debian's docker-registry), configured like the lab's
    start-reference.sh: filesystem storage, deletes on, in-memory blob descriptor cache. With a
    bucket, the s3 driver on it instead (stack-notes: it panics at startup when AWS_CA_BUNDLE is
    set, so its environment goes without)."""

    name = "reference"

    def __init__(self, work, pids, bucket=None):
        super().__init__(work, pids)
        self.bucket = bucket
        self.redirect = False  # blob GETs answered with a presigned URL (the s3 driver's default)

    def env(self):
        return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}

    def command(self, data, port):
        config = Path(str(data) + ".yml")
        config.write_text(
            "version: 0.1\n"
            "log: { level: error, accesslog: { disabled: true } }\n"
            "storage:\n"
            + reference_storage(data, self.bucket, self.redirect) +
            "  delete: { enabled: true }\n"
            "  cache: { blobdescriptor: inmemory }\n"
            f"http: {{ addr: {LOOPBACK}:{port} }}\n"
            "health: { storagedriver: { enabled: false } }\n")
        return ["/usr/bin/docker-registry", "serve", str(config)]


@dataclass
class Bucket:
    """Where a registry keeps its blobs in the object store: a bucket, a key prefix (no slash
    at either end), and how to reach and sign for it."""
    endpoint: str
    region: str
    bucket: str
    access_key: str
    secret_key: str
    prefix: str = ""

    def under(self, prefix):
        return Bucket(self.endpoint, self.region, self.bucket, self.access_key,
                      self.secret_key, prefix)

    def client(self):
        return S3(self.endpoint, self.region, self.bucket, self.access_key, self.secret_key)


class Garage:
    """A private single-node Garage (the S3 service tests/services/garage.sh starts) in `root`
    under bench/work: garage.sh makes its config, layout, the bucket `atoll-tests` and a key.
    `restart` starts the server again on the same config and data (same ports, bucket and key);
    `snapshot` and `restore` copy its metadata and data directories while it is stopped."""

    def __init__(self, root, pids):
        self.root = Path(root)
        self.pids = pids
        self.pid = None
        self.bucket = None  # the Bucket of garage.sh's bucket and key, prefix ""
        self.version = "unknown"

    def start(self):
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        script = (f'source {REPO}/tests/services/garage.sh && garage_start "{self.root}" && '
                  'echo "$_GARAGE_BIN" && env | grep "^ATOLL_TEST_S3_"')
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        pidfile = self.root / "garage.pid"
        if pidfile.exists():
            self.pid = int(pidfile.read_text())
            self.pids.add(self.pid)
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"tests/services/garage.sh could not start Garage in {self.root}: "
                               f"{r.stderr.strip()[-800:]}")
        lines = r.stdout.strip().splitlines()
        self.binary = lines[0]
        env = dict(ln.split("=", 1) for ln in lines[1:])
        self.bucket = Bucket(env["ATOLL_TEST_S3_ENDPOINT"], env["ATOLL_TEST_S3_REGION"],
                             env["ATOLL_TEST_S3_BUCKET"], env["ATOLL_TEST_S3_ACCESS_KEY_ID"],
                             env["ATOLL_TEST_S3_SECRET_ACCESS_KEY"])
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        self.version = (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or \
            out.stderr else "unknown"

    def _serve(self):
        """The server again on the existing config and data; waits for the bucket."""
        with open(self.root / "garage.log", "ab") as log:
            proc = subprocess.Popen([self.binary, "-c", str(self.root / "garage.toml"), "server"],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
        self.pid = proc.pid
        self.pids.add(proc.pid)
        (self.root / "garage.pid").write_text(f"{proc.pid}\n")
        s3 = self.bucket.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.request("GET", "", query={"list-type": "2", "max-keys": "1"})
                return
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Garage did not come back; see {self.root / 'garage.log'}")
                time.sleep(0.05)

    def stop(self):
        if self.pid is not None:
            stop_pid(self.pid, wait=20)
            self.pid = None

    def restart(self):
        self.stop()
        self._serve()

    def snapshot(self, name):
        """Stops the server, copies its state to `name`, starts it again."""
        self.stop()
        snap = self.root / f"snapshot-{name}"
        shutil.rmtree(snap, ignore_errors=True)
        snap.mkdir()
        for d in ("meta", "data"):
            subprocess.run(["cp", "-a", str(self.root / d), str(snap / d)], check=True)
        self._serve()

    def restore(self, name):
        """Stops the server, puts back the state of snapshot `name`, starts it again."""
        self.stop()
        snap = self.root / f"snapshot-{name}"
        for d in ("meta", "data"):
            shutil.rmtree(self.root / d)
            subprocess.run(["cp", "-a", str(snap / d), str(self.root / d)], check=True)
        self._serve()


class Postgres:
    """A private PostgreSQL (the server tests/services/postgres.sh starts) in `root` under
    bench/work, with its role `atoll` (which may create databases). Every atoll data directory
    gets a database of its own, made the first time an atoll is started on it and named in the
    file `bench-index` there: a fresh data directory means a fresh index, as it does on SQLite.
    The databases are not dropped; the whole server goes at the next run's start."""

    MARKER = "bench-index"  # in a data directory: the name of its database

    def __init__(self, root, pids):
        self.root = Path(root)
        self.pids = pids
        self.pid = None
        self.version = "unknown"
        self._made = 0

    def start(self):
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        script = (f'source {REPO}/tests/services/postgres.sh && postgres_start "{self.root}" && '
                  'env | grep "^ATOLL_TEST_PG_"')
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        pidfile = self.root / "data" / "postmaster.pid"
        if pidfile.exists():
            self.pid = int(pidfile.read_text().split()[0])
            self.pids.add(self.pid)
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"tests/services/postgres.sh could not start PostgreSQL in "
                               f"{self.root}: {r.stderr.strip()[-800:]}")
        env = dict(ln.split("=", 1) for ln in r.stdout.strip().splitlines())
        self.host, self.port = env["ATOLL_TEST_PG_HOST"], int(env["ATOLL_TEST_PG_PORT"])
        self.password, self.bin = env["ATOLL_TEST_PG_PASSWORD"], env["ATOLL_TEST_PG_BIN"]
        self.version = "PostgreSQL " + self.psql("SHOW server_version")

    def stop(self):
        """pg_ctl stop -m fast through postgres.sh, which kills the server if that fails."""
        if self.pid is None:
            return
        script = (f'source {REPO}/tests/services/postgres.sh && _PG_DIR="{self.root}" '
                  f'_PG_BIN="{getattr(self, "bin", "")}" _PG_PID={self.pid} && postgres_stop')
        subprocess.run(["bash", "-c", script], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop_pid(self.pid, wait=10)  # if postgres.sh could not (no pg_ctl): SIGTERM, SIGKILL
        self.pid = None

    def psql(self, sql, db="postgres"):
        """One statement as role atoll over TCP; its output (unaligned, no headers)."""
        r = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            "-h", self.host, "-p", str(self.port), "-U", "atoll", "-d", db,
                            "-c", sql], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env={**os.environ, "PGPASSWORD": self.password})
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r} on {db}: {r.stderr.strip()[-500:]}")
        return r.stdout.strip()

    def url(self, db):
        return f"postgres://atoll@{self.host}:{self.port}/{db}"

    def _new_database(self, template=None):
        self._made += 1
        name = f"bench_{self._made}"
        sql = f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
        deadline = time.monotonic() + 10
        while True:
            try:
                self.psql(sql)
                return name
            except RuntimeError as e:
                # A template's last user (an atoll just stopped) may take a moment to go.
                if "being accessed by other users" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def database_for(self, data):
        """The database of data directory `data`: the one its marker names, else a new one."""
        marker = Path(data) / self.MARKER
        if marker.exists():
            return marker.read_text().strip()
        Path(data).mkdir(parents=True, exist_ok=True)
        name = self._new_database()
        marker.write_text(name + "\n")
        return name

    def share(self, data, other):
        """Data directory `other` on the same database as `data` (another node of a cluster)."""
        Path(other).mkdir(parents=True, exist_ok=True)
        (Path(other) / self.MARKER).write_text(self.database_for(data) + "\n")

    def copy(self, data, other):
        """Data directory `other` (a copy of `data`'s files) gets a copy of `data`'s database
        (CREATE DATABASE ... TEMPLATE: nothing may be connected to it meanwhile)."""
        name = self._new_database(template=self.database_for(data))
        (Path(other) / self.MARKER).write_text(name + "\n")

    def drop(self, data):
        """Drops the database of data directory `data` (a copy done with: it takes room)."""
        self.psql(f"DROP DATABASE IF EXISTS {self.database_for(data)}")
        (Path(data) / self.MARKER).unlink(missing_ok=True)

    def query(self, data, sql):
        """A query on the database of data directory `data`."""
        return self.psql(sql, db=self.database_for(data))

    def cpu_seconds(self):
        """User + system CPU time so far of the server: the postmaster and every process it
        has now (backends, checkpointer, autovacuum). A backend that exits takes its time with
        it; atoll's pooled connections live as long as atoll."""
        if self.pid is None:
            return 0.0
        pids = [self.pid]
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return sum(cpu_seconds(p) for p in pids)


class Dockerd:
    """A private dockerd (vfs storage, no iptables, no bridge) on its own socket under work/.
    Docker talks plain HTTP to registries on 127.0.0.0/8."""

    def __init__(self, work, pids):
        self.root = Path(work) / "docker"
        self.pids = pids
        self.proc = None
        self.socket = self.root / "docker.sock"

    @property
    def env(self):
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def start(self):
        """Starts dockerd without waiting for it (it takes seconds); see `wait`."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            [shutil.which("dockerd") or "/usr/sbin/dockerd", "--iptables=false",
             "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "-H", f"unix://{self.socket}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pids.add(self.proc.pid)

    def wait(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited; see {self.root / 'dockerd.log'}")
            ok = subprocess.run(["docker", "info"], env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
            if ok:
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not come up; see {self.root / 'dockerd.log'}")

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid, wait=20)
            self.proc = None
