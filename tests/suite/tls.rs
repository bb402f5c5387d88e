//! TLS termination with `PAM_TLS_CERT`/`PAM_TLS_KEY`: chat over wss with a self-signed (rcgen)
//! certificate, HSTS over https, a reload (the function SIGHUP calls, and SIGHUP on the real
//! binary) that new handshakes see while the old socket stays open, a bad new file that keeps the
//! old certificate, and settings that cannot load refusing to start with a clear error.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::process::{free_port, wait_exit};
use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use pam_gateway::Application;
use pam_gateway::http::tls::TlsFiles;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for `localhost` written as two PEM files (removed on drop).
struct CertFiles {
    cert: TempFile,
    key: TempFile,
}

/// A fresh self-signed certificate; returns its DER (what a client sees) too.
fn new_certificate() -> (String, String, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem(), generated.cert.der().clone())
}

impl CertFiles {
    fn new() -> (CertFiles, CertificateDer<'static>) {
        let id = uuid::Uuid::new_v4().simple();
        let files = CertFiles {
            cert: TempFile(std::env::temp_dir().join(format!("pam-tls-{id}-cert.pem"))),
            key: TempFile(std::env::temp_dir().join(format!("pam-tls-{id}-key.pem"))),
        };
        let der = files.write_new();
        (files, der)
    }

    /// Replaces both files with a new certificate.
    fn write_new(&self) -> CertificateDer<'static> {
        let (cert, key, der) = new_certificate();
        std::fs::write(&self.cert.0, cert).unwrap();
        std::fs::write(&self.key.0, key).unwrap();
        der
    }

    fn paths(&self) -> (PathBuf, PathBuf) {
        (self.cert.0.clone(), self.key.0.clone())
    }
}

/// A client that trusts exactly `root`.
fn connector(root: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS handshake with a client trusting only `root`; the certificate the server presented.
async fn handshake(port: u16, root: &CertificateDer<'static>) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    connector(root).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("the server sent a certificate")[0].clone().into_owned()
}

async fn wss_connect(port: u16, root: &CertificateDer<'static>) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = handshake(port, root).await.expect("the TLS handshake succeeds");
    let url = format!("wss://localhost:{port}/api/v1/pam/ws/{USER}?token={}", token_for(USER));
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("the upgrade succeeds");
    assert_eq!(recv_json(&mut ws).await["type"], "connection");
    ws
}

async fn send_json(ws: &mut WebSocketStream<TlsStream<TcpStream>>, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.unwrap();
}

/// The next JSON frame that is not a server ping.
async fn recv_json(ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("the socket is open").unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" {
                return value;
            }
        }
    }
}

/// Starts the app in process with TLS on; returns the app handle and the reloader.
async fn spawn_tls_app(files: &CertFiles) -> (TestApp, TlsFiles) {
    let (mut settings, db) = test_settings();
    (settings.tls_cert, settings.tls_key) = (Some(files.paths().0), Some(files.paths().1));
    let app = Application::build_with(settings, Default::default()).await.expect("the gateway builds with TLS");
    let tls = app.tls().expect("TLS is on");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (TestApp { addr, stop: Some(stop), server, db }, tls)
}

#[tokio::test]
async fn chat_over_wss_and_a_reload_serves_new_handshakes_while_the_old_socket_stays_open() {
    let (files, first) = CertFiles::new();
    let (app, tls) = spawn_tls_app(&files).await;
    let port = app.addr.port();
    let mut old = wss_connect(port, &first).await;
    send_json(&mut old, json!({"type": "chat", "message": "hello"})).await;
    let answer = recv_json(&mut old).await;
    assert_eq!(answer["type"], "chat_response", "{answer}");
    assert_eq!(answer["error"], false, "{answer}");

    let second = files.write_new();
    tls.reload().expect("the new files load");
    let fresh = handshake(port, &second).await.expect("a new handshake trusts the new certificate");
    assert_eq!(presented(&fresh), second);
    assert!(handshake(port, &first).await.is_err(), "new handshakes no longer present the old certificate");
    let mut new_socket = wss_connect(port, &second).await;
    send_json(&mut new_socket, json!({"type": "ping", "timestamp": 2})).await;
    assert_eq!(recv_json(&mut new_socket).await, json!({"type": "pong", "timestamp": 2}));

    send_json(&mut old, json!({"type": "ping", "timestamp": 1})).await;
    assert_eq!(recv_json(&mut old).await, json!({"type": "pong", "timestamp": 1}), "the old socket survived the reload");
    app.shutdown().await;
}

#[tokio::test]
async fn a_bad_new_certificate_file_keeps_the_old_certificate() {
    let (files, first) = CertFiles::new();
    let (app, tls) = spawn_tls_app(&files).await;
    std::fs::write(&files.cert.0, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    let error = tls.reload().expect_err("a broken file does not load").to_string();
    assert!(error.contains("PAM_TLS_CERT"), "{error}");
    let still = handshake(app.addr.port(), &first).await.expect("the old certificate is still served");
    assert_eq!(presented(&still), first);
}

#[tokio::test]
async fn https_responses_carry_hsts_and_the_security_headers() {
    let (files, first) = CertFiles::new();
    let (app, _tls) = spawn_tls_app(&files).await;
    let mut stream = handshake(app.addr.port(), &first).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_string(&mut answer)).await.expect("an answer in time");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{answer}");
    assert!(lower.contains("strict-transport-security: max-age="), "{answer}");
    assert!(lower.contains("x-content-type-options: nosniff"), "{answer}");
}

#[tokio::test]
async fn tls_settings_that_cannot_load_refuse_to_start_with_a_clear_error() {
    let (mut settings, _db) = test_settings();
    settings.tls_cert = Some("/nonexistent/pam-cert.pem".into());
    settings.tls_key = Some("/nonexistent/pam-key.pem".into());
    let error = Application::build(settings.clone()).await.err().expect("refuses to start").to_string();
    assert!(error.contains("PAM_TLS_CERT=/nonexistent/pam-cert.pem"), "{error}");

    let (files, _) = CertFiles::new();
    std::fs::write(&files.key.0, "no key here").unwrap();
    (settings.tls_cert, settings.tls_key) = (Some(files.paths().0), Some(files.paths().1));
    let error = Application::build(settings.clone()).await.err().expect("refuses to start").to_string();
    assert!(error.contains("PAM_TLS_KEY="), "{error}");

    settings.tls_key = None;
    let error = Application::build(settings).await.err().expect("refuses to start").to_string();
    assert!(error.contains("must be set together"), "{error}");
}

/// The real binary with TLS on; killed (by pid) on drop.
struct TlsGateway {
    child: Child,
    port: u16,
    log: TempFile,
    _db: TempFile,
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl TlsGateway {
    fn start(files: &CertFiles) -> TlsGateway {
        let port = free_port();
        let id = uuid::Uuid::new_v4().simple();
        let (db, log) = (
            TempFile(std::env::temp_dir().join(format!("pam-tls-{id}.db"))),
            TempFile(std::env::temp_dir().join(format!("pam-tls-{id}.log"))),
        );
        let out = std::fs::File::create(&log.0).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pam-gateway"));
        for var in ["SUPABASE_URL", "PAM_JWKS_URL", "PAM_JWT_ISSUER", "REDIS_URL", "PAM_LOG_FORMAT"] {
            command.env_remove(var);
        }
        let child = command
            .env("PAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", format!("sqlite://{}", db.0.display()))
            .env("SUPABASE_JWT_SECRET", TEST_SECRET)
            .env("PAM_DEV_AUTH", "false")
            .env("PAM_TLS_CERT", &files.cert.0)
            .env("PAM_TLS_KEY", &files.key.0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the binary starts");
        TlsGateway { child, port, log, _db: db }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log.0).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} worked");
    }
}

#[tokio::test]
async fn sighup_makes_the_running_binary_present_the_new_certificate() {
    let (files, first) = CertFiles::new();
    let mut gateway = TlsGateway::start(&files);
    poll_until(Duration::from_secs(30), Duration::from_millis(50), "the gateway answers TLS", async || {
        if handshake(gateway.port, &first).await.is_ok() {
            return Ok(());
        }
        assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway exited; log:\n{}", gateway.log());
        Err(format!("log:\n{}", gateway.log()))
    })
    .await;
    let mut old = wss_connect(gateway.port, &first).await;

    let second = files.write_new();
    gateway.signal("-HUP");
    let port = gateway.port;
    wait_until("new handshakes present the new certificate", || async {
        handshake(port, &second).await.is_ok_and(|stream| presented(&stream) == second)
    })
    .await;
    assert!(gateway.child.try_wait().unwrap().is_none(), "SIGHUP did not stop the process");
    assert!(gateway.log().contains("TLS certificate reloaded"), "one log line says so:\n{}", gateway.log());
    send_json(&mut old, json!({"type": "ping", "timestamp": 3})).await;
    assert_eq!(recv_json(&mut old).await, json!({"type": "pong", "timestamp": 3}), "the old socket survived SIGHUP");

    gateway.signal("-TERM");
    let stopped = wait_exit(&mut gateway.child, Duration::from_secs(15)).await;
    assert!(stopped.is_some(), "the gateway stops after SIGTERM; log:\n{}", gateway.log());
}
