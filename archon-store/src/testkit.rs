//! A throwaway PostgreSQL cluster for tests: `initdb` into a temp dir and
//! `pg_ctl start` on a free loopback port, torn down on drop. Runs the server
//! binaries as the `postgres` user when the tests run as root (initdb refuses
//! root). `scripts/test` installs Debian's `postgresql` package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A running PostgreSQL cluster of its own.
#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    counter: std::sync::atomic::AtomicU32,
}

impl TempPostgres {
    /// Creates and starts a cluster tuned for tests: no fsync (a test's database
    /// need not survive a power cut). Panics, saying what is missing, if the
    /// server binaries are not installed.
    pub fn start() -> TempPostgres {
        TempPostgres::start_with(false)
    }

    /// Like [`TempPostgres::start`], but `durable` keeps PostgreSQL's defaults
    /// (fsync on every commit), for benchmarks and the conformance run that
    /// must see a production-like server.
    pub fn start_with(durable: bool) -> TempPostgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new().prefix("archon-pg-").tempdir().expect("a temp dir for PostgreSQL");
        let port = free_port();
        let pg = TempPostgres { dir, bin, port, counter: std::sync::atomic::AtomicU32::new(0) };
        if as_postgres() {
            // The postgres user must own the cluster's dir and reach it.
            chown_postgres(pg.dir.path());
        }
        let data = pg.data_dir();
        let out = pg.run("initdb", &["-D", path(&data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let conf = if durable {
            "max_connections = 200\n"
        } else {
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
        };
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .expect("postgresql.conf");
        pg.pg_ctl_start();
        pg
    }

    /// The URL of the cluster's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("archon_{n}");
        let sql = format!("CREATE DATABASE {name}");
        let out = self.psql("postgres", &sql);
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` with psql against `database`; its output.
    pub fn psql(&self, database: &str, sql: &str) -> Output {
        let port = self.port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            database,
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ];
        Command::new(self.bin.join("psql")).args(args).output().expect("psql")
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) {
        let data = self.data_dir();
        let out = self.run("pg_ctl", &["-D", path(&data), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts it again after [`TempPostgres::stop`], on the same port.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let out = self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-o", &options, "-w", "-t", "30", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Runs a server binary, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if as_postgres() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "stop"]);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// Whether the server must run as `postgres`: we are root, which initdb refuses.
fn as_postgres() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn chown_postgres(dir: &Path) {
    let out = Command::new("chown").args(["postgres:postgres", path(dir)]).output().expect("chown");
    assert!(out.status.success(), "chown postgres {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn server_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok().map(|v| (v, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server under /usr/lib/postgresql: these tests need Debian's postgresql package (scripts/test installs it)"
        ),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
