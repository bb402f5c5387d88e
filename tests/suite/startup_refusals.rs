//! The first hour: every start the real binary refuses says, once and in one line on stderr, the
//! setting, its value (passwords redacted) and the next step, with a non-zero exit (2 for a value
//! that does not parse, 1 otherwise). A host name in `PAM_LISTEN` is resolved, a missing SQLite
//! directory is created, and a default start logs no warning.

use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use pam_gateway::storage::database::Database;

use crate::common::process::{KillOnDrop, gateway, refused_start, temp_db};
use crate::common::*;

/// The one stderr line of a refused start, after checking there is exactly one and its exit code.
fn the_one_line(env: &[(&str, &str)], exit_code: i32) -> String {
    let (status, stderr) = refused_start(env);
    assert_exit(status, exit_code, &stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {stderr:?}");
    lines[0].to_string()
}

fn assert_exit(status: ExitStatus, code: i32, stderr: &str) {
    assert_eq!(status.code(), Some(code), "exit code ({stderr})");
}

/// `phrase` is said exactly once in `line`.
fn once(line: &str, phrase: &str) {
    assert_eq!(line.matches(phrase).count(), 1, "{phrase:?} once in {line:?}");
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn test_postgres_url() -> String {
    std::env::var("PAM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[test]
fn a_listen_address_without_a_port_names_pam_listen_and_exits_2() {
    let line = the_one_line(&[("PAM_LISTEN", "localhost")], 2);
    assert_eq!(
        line,
        "pam-gateway: PAM_LISTEN=localhost: no port: expected host:port, e.g. 127.0.0.1:8080, localhost:8080 or 0.0.0.0:8080 (every \
         interface); set a valid value or unset it (default 127.0.0.1:8080); pam-gateway --help describes it"
    );
}

#[test]
fn a_number_that_does_not_parse_names_its_env_var_not_the_flag() {
    let line = the_one_line(&[("PAM_MAX_CONNECTIONS", "lots")], 2);
    assert!(line.starts_with("pam-gateway: PAM_MAX_CONNECTIONS=lots: invalid digit found in string; "), "{line}");
    assert!(line.contains("(default 50000)") && !line.contains("--max-connections"), "{line}");
}

#[test]
fn a_host_name_in_pam_listen_is_resolved_and_served() {
    let port = closed_port();
    let db = temp_db();
    let child = gateway(port, &db, &[("PAM_LISTEN", &format!("localhost:{port}"))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.0.try_wait().unwrap().is_none(), "the gateway refused localhost:{port}");
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_port_in_use_is_refused_before_the_database_is_opened() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // An unreachable database: had it been opened first, its refusal would come instead.
    let database = format!("postgres://pam@127.0.0.1:{}/pam", closed_port());
    let line = the_one_line(&[("PAM_LISTEN", &format!("127.0.0.1:{port}")), ("DATABASE_URL", &database)], 1);
    assert_eq!(
        line,
        format!(
            "pam-gateway: PAM_LISTEN=127.0.0.1:{port}: the port is already in use (another pam-gateway or program listens there); stop \
             it, or choose another port, e.g. PAM_LISTEN=127.0.0.1:{}",
            port + 1
        )
    );
}

#[test]
fn an_unreachable_postgres_is_named_at_once_with_host_port_and_a_redacted_url() {
    let port = closed_port();
    let started = Instant::now();
    let line = the_one_line(&[("DATABASE_URL", &format!("postgres://pam:hunter2@127.0.0.1:{port}/pam"))], 1);
    assert_eq!(
        line,
        format!(
            "pam-gateway: DATABASE_URL=postgres://pam:***@127.0.0.1:{port}/pam: Postgres is not reachable at 127.0.0.1:{port} \
             (connection refused); start it there, or point DATABASE_URL at a running server"
        )
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "refused at once, not after the pool timeout: {:?}", started.elapsed());
}

#[test]
fn a_missing_postgres_database_is_named_once_with_the_command_that_creates_it() {
    let server = test_postgres_url();
    let (server, _database) = server.split_once('?').map_or(server.as_str(), |(url, _)| url).rsplit_once('/').expect("a database URL");
    let name = format!("pam_missing_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{server}/{name}");
    let line = the_one_line(&[("DATABASE_URL", &url)], 1);
    assert!(line.starts_with(&format!("pam-gateway: DATABASE_URL={url}: Postgres at ")), "{line}");
    once(&line, &format!("has no database \"{name}\"; create it (createdb -h "));
    assert!(line.ends_with(&format!(" {name}) or name an existing one in DATABASE_URL")), "{line}");
    assert!(!line.contains(" at line "), "no Postgres source line numbers: {line}");
}

#[test]
fn a_sqlite_directory_that_cannot_be_created_is_refused_naming_the_path_and_database_url() {
    let blocker = TempFile(std::env::temp_dir().join(format!("pam-not-a-dir-{}", uuid::Uuid::new_v4().simple())));
    std::fs::write(&blocker.0, b"a file, not a directory").unwrap();
    let url = format!("sqlite://{}/data/pam.db", blocker.0.display());
    let line = the_one_line(&[("DATABASE_URL", &url)], 1);
    assert_eq!(
        line,
        format!(
            "pam-gateway: DATABASE_URL={url}: the directory {}/data of the SQLite file does not exist and cannot be created (Not a \
             directory (os error 20)); create it, or choose a writable path in DATABASE_URL",
            blocker.0.display()
        )
    );
}

#[test]
fn a_sqlite_file_that_cannot_be_opened_is_refused_naming_the_path_once() {
    // A directory where the file should be: SQLite cannot open it (its code 14).
    let directory = std::env::temp_dir().join(format!("pam-dir-as-db-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&directory).unwrap();
    let url = format!("sqlite://{}", directory.display());
    let line = the_one_line(&[("DATABASE_URL", &url)], 1);
    let _ = std::fs::remove_dir_all(&directory);
    assert_eq!(
        line,
        format!(
            "pam-gateway: DATABASE_URL={url}: cannot open the SQLite file {} (unable to open database file); check that this user may \
             write it and its directory, or choose another path in DATABASE_URL",
            directory.display()
        )
    );
}

#[test]
fn a_url_that_names_no_known_database_is_refused_with_its_password_redacted() {
    let line = the_one_line(&[("DATABASE_URL", "mysql://root:hunter2@db.example/pam")], 1);
    assert_eq!(
        line,
        "pam-gateway: DATABASE_URL=mysql://root:***@db.example/pam: not a database URL; it must start with postgres://, postgresql:// \
         or sqlite: (unset, it is sqlite://pam-gateway.db)"
    );
}

#[tokio::test]
async fn a_sqlite_file_in_a_missing_directory_gets_the_directory_created() {
    let root = std::env::temp_dir().join(format!("pam-new-dir-{}", uuid::Uuid::new_v4().simple()));
    let file = root.join("data").join("pam.db");
    let opened = Database::connect(&format!("sqlite://{}", file.display()), true).await.map(|db| db.backend());
    let created = file.is_file();
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(opened.map_err(|e| format!("{e:#}")), Ok("sqlite"));
    assert!(created, "{} was created", file.display());
}

#[test]
fn a_default_start_logs_no_warning() {
    // The default start, in an empty directory (its SQLite file, dev key and outbox journal land
    // there); only the port is free-chosen, as 8080 may be taken on the machine running the test.
    let directory = std::env::temp_dir().join(format!("pam-default-start-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&directory).unwrap();
    let port = closed_port();
    let log_path = directory.join("stderr.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pam-gateway"))
        .env_clear()
        .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAM_LOG_FORMAT", "json")
        .current_dir(&directory)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + WAIT;
    let logs = loop {
        let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
        if logs.contains("pam-gateway listening") {
            break logs;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "the default start failed: {logs}");
        assert!(Instant::now() < deadline, "the default start did not listen: {logs}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(child);
    let _ = std::fs::remove_dir_all(&directory);
    let loud: Vec<&str> = logs.lines().filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")).collect();
    assert!(loud.is_empty(), "a default start logs nothing the user has to act on: {loud:#?}");
}
