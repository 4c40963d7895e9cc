//! Throw-away PostgreSQL for tests. `PgCluster` is a cluster of its own made by
//! `scripts/pg-cluster.sh` in a temp dir and stopped when dropped (about a second to make).
//! `PgDatabase` is a fresh database for one test: on a cluster of its own, or, when
//! `KMSGW_TEST_PG_URL` names a running server (a superuser URL, as the script prints),
//! a new database there, dropped when done. Tests that stop or restart the server always
//! use a cluster of their own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::project_root;

pub struct PgCluster {
    dir: tempfile::TempDir,
    password: String,
    port: u16,
}

impl PgCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = script(&["start"], dir.path());
        let url = env_line(&out, "KMSGW_TEST_PG_URL");
        let (password, port) = parse_url(&url);
        PgCluster {
            dir,
            password,
            port,
        }
    }

    /// The superuser URL of database `db` on 127.0.0.1, no TLS.
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "postgres://kmsgw:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The superuser URL of the database the script made.
    pub fn url(&self) -> String {
        self.url_of("kmsgw")
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (for localhost and 127.0.0.1).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// Runs one query on the script's database; every value as text.
    pub fn query(&self, statement: &str) -> Vec<Vec<String>> {
        query(&self.url(), statement)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `pg_ctl restart -m fast`: every open connection is closed by the server.
    pub fn restart(&self) {
        script(&["restart"], self.dir.path());
    }

    pub fn stop(&self) {
        script(&["stop"], self.dir.path());
    }

    /// Starts a stopped cluster again on the same port.
    pub fn start_again(&self) {
        script(&["start"], self.dir.path());
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new(project_root().join("scripts/pg-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .env("PG_STOP_MODE", "immediate")
            .output();
    }
}

/// A database of its own for one test.
pub struct PgDatabase {
    /// `None` when the database lives on the server of `KMSGW_TEST_PG_URL`.
    cluster: Option<PgCluster>,
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    pub fn new() -> Self {
        match std::env::var("KMSGW_TEST_PG_URL") {
            Ok(server) if !server.is_empty() => {
                let name = format!("kmsgw_test_{}", uuid::Uuid::new_v4().simple());
                sql(&server, &format!("CREATE DATABASE {name} ENCODING 'UTF8'"));
                let url = replace_db(&server, &name);
                PgDatabase {
                    cluster: None,
                    admin_url: server,
                    name,
                    url,
                }
            }
            _ => {
                let cluster = PgCluster::start();
                let url = cluster.url();
                PgDatabase {
                    admin_url: url.clone(),
                    name: "kmsgw".into(),
                    url,
                    cluster: Some(cluster),
                }
            }
        }
    }

    /// A superuser URL of this database (no TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs SQL statements on this database as the superuser.
    pub fn sql(&self, statements: &str) {
        sql(&self.url, statements);
    }

    /// Runs one query on this database; every value as text (`NULL` for null).
    pub fn query(&self, statement: &str) -> Vec<Vec<String>> {
        query(&self.url, statement)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.cluster.is_none() {
            let admin = self.admin_url.clone();
            let drop_db = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
                    let _ = c.batch_execute(&drop_db);
                }
            })
            .join();
        }
    }
}

/// Runs one query on the database of `url`; every value as text (`NULL` for null).
pub fn query(url: &str, statement: &str) -> Vec<Vec<String>> {
    let url = url.to_owned();
    let statement = statement.to_owned();
    off_runtime(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .simple_query(&statement)
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
}

/// Runs `statements` on the database of `url` (a thread of its own, so that it works from
/// async tests too: the blocking client may not run on a runtime's thread).
pub fn sql(url: &str, statements: &str) {
    let url = url.to_owned();
    let statements = statements.to_owned();
    off_runtime(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .batch_execute(&statements)
            .unwrap_or_else(|e| panic!("{statements}: {e:?}"));
    });
}

fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .expect("database helper thread")
}

fn script(args: &[&str], dir: &Path) -> String {
    let out = Command::new(project_root().join("scripts/pg-cluster.sh"))
        .args(args)
        .arg(dir)
        .output()
        .expect("run scripts/pg-cluster.sh");
    assert!(
        out.status.success(),
        "scripts/pg-cluster.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn env_line(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= line in {out:?}"))
        .to_owned()
}

/// Password and port of `postgres://kmsgw:PASSWORD@127.0.0.1:PORT/kmsgw`.
fn parse_url(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("postgres://kmsgw:").expect("script URL");
    let (password, rest) = rest.split_once('@').expect("password");
    let port = rest
        .strip_prefix("127.0.0.1:")
        .and_then(|r| r.split_once('/'))
        .map(|(p, _)| p.parse().expect("port"))
        .expect("port");
    (password.to_owned(), port)
}

/// `url` with its database name replaced by `db` (parameters kept).
fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].rfind('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
