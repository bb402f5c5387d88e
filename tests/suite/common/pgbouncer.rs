//! A real PgBouncer (Debian's 1.18, as old as the gateway supports) in front of the test Postgres
//! on 127.0.0.1:5432, started by the test on a free port and stopped when dropped. In
//! `pool_mode = transaction` it is what Supabase's port 6543 is, with two server connections per
//! database, so the gateway's 16 client connections share them as they would in production; in
//! `pool_mode = session` it is Supabase's session pooler.
//!
//! `ignore_startup_parameters` is left empty on purpose: PgBouncer then refuses any startup
//! parameter it does not track (sqlx's `extra_float_digits`), so the test proves the gateway sends
//! none, as a pooler configured by someone else may also refuse them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until_within;

/// What a test that finds no PgBouncer says.
pub const INSTALL_PGBOUNCER: &str = "PgBouncer (1.18 or later) is required for the pooler tests: ./scripts/test.sh installs it \
                                     (by hand: `apt-get install -y pgbouncer` on Debian/Ubuntu, `brew install pgbouncer` on macOS), \
                                     or put it on PATH.";

/// How the pooler hands out server connections.
#[derive(Clone, Copy, Debug)]
pub enum PoolMode {
    /// A server connection per transaction: Supabase's transaction pooler (port 6543).
    Transaction,
    /// A server connection per client connection: Supabase's session pooler (port 5432).
    Session,
}

pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in `mode` in front of 127.0.0.1:5432 and waits until it accepts.
    pub async fn start(mode: PoolMode) -> Self {
        let binary = find_binary().unwrap_or_else(|| panic!("{INSTALL_PGBOUNCER}"));
        let dir = std::env::temp_dir().join(format!("pam-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a directory for the PgBouncer files");
        let port = free_port();
        // A session pins a server connection per client, so that mode needs one per client.
        let (mode, pool_size) = match mode {
            PoolMode::Transaction => ("transaction", 2),
            PoolMode::Session => ("session", 40),
        };
        // Trust auth still looks the user up in the auth file.
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").expect("the PgBouncer auth file");
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port=5432\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = {mode}\ndefault_pool_size = {pool_size}\n\
             max_client_conn = 200\n",
            dir.join("users.txt").display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("the PgBouncer ini");
        let log = std::fs::File::create(dir.join("pgbouncer.log")).expect("the PgBouncer log");
        let mut command = Command::new(&binary);
        // PgBouncer refuses to run as root; it switches itself to `-u` (Debian's package user).
        if running_as_root() {
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log twice"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {}: {error}\n{INSTALL_PGBOUNCER}", binary.display()));
        let mut bouncer = PgBouncer { child, dir, port };
        let accepts = async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
        if let Ok(Some(status)) = bouncer.child.try_wait() {
            panic!("PgBouncer exited at once ({status}): {}", bouncer.log());
        }
        wait_until_within(Duration::from_secs(10), &format!("PgBouncer accepts on 127.0.0.1:{port}"), accepts).await;
        bouncer
    }

    /// `direct_url` (a database on 127.0.0.1:5432) through this PgBouncer, query string kept.
    pub fn url_for(&self, direct_url: &str) -> String {
        let swapped = direct_url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port), 1);
        assert_ne!(swapped, direct_url, "the test database is on 127.0.0.1:5432: {direct_url}");
        swapped
    }

    /// What PgBouncer logged so far (for a failing assertion).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "PgBouncer's log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `pgbouncer` on PATH, or where Debian installs it (/usr/sbin, not on every user's PATH).
fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>());
    on_path
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}
