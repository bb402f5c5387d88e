//! A throwaway Postgres 15 cluster on a free port (initdb as the `postgres` OS user), for tests
//! that stop Postgres under a running gateway. Removed on drop.

use std::path::PathBuf;
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(command: &str) {
    let output = Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", command]).output().expect("su runs");
    assert!(
        output.status.success(),
        "`{command}` failed (this test needs root, the postgres OS user and PostgreSQL 15 binaries in {PG_BIN}): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    pub fn create() -> Self {
        let dir = std::env::temp_dir().join(format!("pam-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
        assert!(status.success(), "chown the cluster directory");
        let port = super::process::free_port();
        as_postgres(&format!("{PG_BIN}/initdb -D {}/data -A trust -U postgres >/dev/null", dir.display()));
        let cluster = Cluster { dir, port };
        cluster.start();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let d = self.dir.display();
        as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {d}/data -o '-p {} -k {d} -c listen_addresses=127.0.0.1' -l {d}/log -w start >/dev/null",
            self.port
        ));
    }

    pub fn stop(&self) {
        as_postgres(&format!("{PG_BIN}/pg_ctl -D {}/data -m immediate -w stop >/dev/null", self.dir.display()));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", &format!("{PG_BIN}/pg_ctl -D {}/data -m immediate -w stop", self.dir.display())])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
