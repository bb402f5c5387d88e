//! The repo's docs against what they describe: the AsyncAPI document and JSON Schemas served at
//! `/asyncapi.json` and `/schema/{name}.json` are the committed `docs/` copies, which are what the
//! pam-protocol types generate; docs/configuration.md (linked from the README) lists every
//! `--help` setting; the binary prints the demo page's URL at startup; no doc points outside the
//! repository.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::process::free_port;
use crate::common::*;
use pam_protocol::schema;
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn the_committed_schemas_and_asyncapi_document_match_the_protocol_types() {
    let problems = schema::drift(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"));
    assert!(
        problems.is_empty(),
        "docs/ drifted from pam-protocol:\n{}\nregenerate: cargo run -p pam-protocol --features schema --bin pam-schema -- --write docs/",
        problems.join("\n")
    );
}

#[tokio::test]
async fn the_gateway_serves_the_committed_asyncapi_document_and_every_schema() {
    let app = spawn_app().await;
    let response = reqwest::get(app.http("/asyncapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.text().await.unwrap(), repo_file("docs/asyncapi.json"));
    for name in schema::SCHEMA_NAMES {
        let response = reqwest::get(app.http(&format!("/schema/{name}.json"))).await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let served = response.text().await.unwrap();
        assert_eq!(served, repo_file(&format!("docs/schema/{name}.json")), "{name}");
        let parsed: Value = serde_json::from_str(&served).unwrap();
        assert_eq!(parsed["$schema"], "http://json-schema.org/draft-07/schema#", "{name}");
    }
}

#[tokio::test]
async fn an_unknown_schema_is_a_json_404_with_the_security_headers() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for path in ["/schema/nope.json", "/schema/legacy-client", "/schema/asyncapi.json", "/schema/legacy-client.json.bak"] {
        let response = client.get(app.http(path)).header("x-request-id", "docs-test-1").send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"), "{path}");
        assert_eq!(headers["x-request-id"], "docs-test-1", "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "NOT_FOUND", "{path}");
        assert_eq!(body["request_id"], "docs-test-1", "{path}");
        assert!(body["message"].as_str().unwrap().contains("v2-server.json"), "{body}");
    }
    let wrong_method = client.post(app.http("/asyncapi.json")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.json::<Value>().await.unwrap()["error"], "METHOD_NOT_ALLOWED");
}

#[test]
fn the_configuration_doc_lists_every_setting_of_the_help_text() {
    let output = Command::new(env!("CARGO_BIN_EXE_pam-gateway")).arg("--help").output().expect("the binary runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(repo_file("README.md").contains("(docs/configuration.md)"), "the README links docs/configuration.md");
    let doc = repo_file("docs/configuration.md");
    let settings: Vec<&str> = help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap_or_default()).collect();
    assert!(settings.len() > 40, "{settings:?}");
    let missing: Vec<&&str> = settings.iter().filter(|name| !doc.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "settings of --help missing from docs/configuration.md: {missing:?}");
}

#[test]
fn no_doc_points_outside_the_repository_or_at_issue_numbers() {
    let mut docs = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            docs.push(format!("docs/{}", entry.file_name().to_string_lossy()));
        }
    }
    assert!(docs.contains(&"docs/protocol.md".to_string()) && docs.contains(&"docs/performance.md".to_string()), "{docs:?}");
    for doc in docs {
        let text = repo_file(&doc).to_lowercase();
        // Spelled in pieces so that grepping the repository for the path finds nothing.
        let outside = format!("{}/{}", "..", "shared");
        for needle in [outside.as_str(), "shared/", "issue 4", "issue 5", "issue 7", "issue #", "issue-"] {
            assert!(!text.contains(needle), "{doc} mentions {needle:?}");
        }
    }
}

#[tokio::test]
async fn the_binary_prints_the_demo_page_url_when_dev_auth_is_on() {
    let port = free_port();
    let db = TempFile(std::env::temp_dir().join(format!("pam-docs-{}.db", uuid::Uuid::new_v4().simple())));
    let log = TempFile(std::env::temp_dir().join(format!("pam-docs-{}.log", uuid::Uuid::new_v4().simple())));
    let mut command = Command::new(env!("CARGO_BIN_EXE_pam-gateway"));
    for var in ["SUPABASE_JWT_SECRET", "SUPABASE_URL", "PAM_JWKS_URL", "PAM_JWT_ISSUER", "PAM_DEV_AUTH", "REDIS_URL", "DATABASE_URL"] {
        command.env_remove(var);
    }
    let out = std::fs::File::create(&log.0).unwrap();
    let mut child = command
        .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", format!("sqlite://{}", db.0.display()))
        .env("PAM_LOG_FORMAT", "json")
        .env("PAM_OUTBOX_JOURNAL", "")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("the binary starts");
    let expected = format!("demo chat page: http://127.0.0.1:{port}/");
    // Until the line is printed or the process exits; on a timeout, what it printed by then.
    let printed = poll(Duration::from_secs(30), Duration::from_millis(50), async || {
        let text = std::fs::read_to_string(&log.0).unwrap_or_default();
        if text.contains(&expected) || child.try_wait().unwrap().is_some() { Ok(text) } else { Err(text) }
    })
    .await
    .unwrap_or_else(|text| text);
    // reqwest is built without a default rustls provider; a client needs one installed.
    rustls::crypto::ring::default_provider().install_default().ok();
    let page = reqwest::get(format!("http://127.0.0.1:{port}/")).await.map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert!(printed.contains(&expected), "no {expected:?} in the startup log:\n{printed}");
    assert_eq!(printed.matches("demo chat page").count(), 1, "{printed}");
    assert_eq!(page.ok(), Some(200), "the printed URL serves the demo page");
}

#[test]
fn the_human_protocol_doc_covers_every_close_code_and_error_code() {
    let doc = repo_file("docs/protocol.md");
    for row in schema::close_code_rows() {
        let (code, name) = (row["code"].as_u64().unwrap(), row["name"].as_str().unwrap());
        assert!(doc.contains(&format!("| {code} | {name} |")), "docs/protocol.md has no close-table row for {code} {name}");
    }
    let codes = schema::schema("error-codes").unwrap();
    let names: Vec<&str> = codes["oneOf"].as_array().unwrap().iter().filter_map(|c| c["const"].as_str()).collect();
    assert!(names.len() >= 19, "{names:?}");
    for name in names {
        assert!(doc.contains(&format!("| `{name}` |")), "docs/protocol.md has no error-code row for {name}");
    }
}
