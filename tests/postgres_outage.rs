//! Postgres going away mid-session: chats still answer (saying the data is out of reach),
//! readiness turns 503, and the turns answered meanwhile are written once Postgres is back —
//! nothing lost. Runs a throwaway cluster of its own (initdb as the `postgres` OS user).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::json;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

struct Cluster {
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
    fn create() -> Self {
        let dir = std::env::temp_dir().join(format!("pam-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
        assert!(status.success(), "chown the cluster directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        as_postgres(&format!("{PG_BIN}/initdb -D {}/data -A trust -U postgres >/dev/null", dir.display()));
        let cluster = Cluster { dir, port };
        cluster.start();
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let d = self.dir.display();
        as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {d}/data -o '-p {} -k {d} -c listen_addresses=127.0.0.1' -l {d}/log -w start >/dev/null",
            self.port
        ));
    }

    fn stop(&self) {
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

async fn chat(client: &mut WsClient, message: &str) -> String {
    client.send_json(json!({"type":"chat","message":message})).await;
    let answer = client.recv_non_ping().await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    answer["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn turns_answered_while_postgres_is_down_are_written_when_it_returns() {
    let cluster = Cluster::create();
    let app = spawn_app_with(|s| s.database_url = cluster.url(), Default::default()).await;
    let mut client = app.connect_ready().await;

    // Nothing is cached yet, so every context load has to reach the stopped server.
    cluster.stop();
    assert!(chat(&mut client, "hi").await.starts_with("Hi there"));
    let budget = chat(&mut client, "how much budget is left?").await;
    assert!(budget.starts_with("I can't see your data right now"), "{budget}");
    wait_until("readiness reports the database down", || async {
        reqwest::get(app.http("/health/ready")).await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    assert!(metric(&app.metrics().await, "pam_turns_pending").unwrap_or(0.0) >= 1.0);

    cluster.start();
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    let stored = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT m.content FROM pam_messages m JOIN pam_conversations c ON c.id = m.conversation_id
             WHERE c.user_id = $1::uuid AND m.role = 'user' ORDER BY m.created_at",
        )
        .bind(USER)
        .fetch_all(&pool)
        .await
        .unwrap_or_default()
    };
    wait_until("the waiting turns are written", || async { stored().await.len() == 2 }).await;
    assert_eq!(stored().await, ["hi", "how much budget is left?"], "written in order");
    wait_until("readiness recovers", || async {
        reqwest::get(app.http("/health/ready")).await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
}
