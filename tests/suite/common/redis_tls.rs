//! A `redis-server` of the test's own that speaks only TLS (as Upstash, Redis Cloud and
//! ElastiCache do), with a CA and a server certificate for `localhost`/`127.0.0.1` made here
//! (rcgen); the CA is in `ca_file`, for `PAM_REDIS_CA_FILE`. Killed, and its files removed, on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config};
use fred::types::config::TlsConnector;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::poll_until;
use super::process::free_port;

pub struct TlsRedisServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    /// The PEM of the CA that signed the server's certificate (not one the system trusts).
    pub ca_file: PathBuf,
}

impl TlsRedisServer {
    /// Starts it on a spare loopback port and waits until it accepts connections; fails saying how
    /// to get a redis-server with TLS when this one has none.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("pam-redis-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = certificates();
        let [ca_file, cert_file, key_file] = [("ca.pem", ca), ("server.pem", cert), ("server.key", key)].map(|(name, pem)| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        });
        let port = free_port();
        let log = dir.join("redis.log");
        let mut args: Vec<String> =
            ["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--tls-auth-clients", "no"].map(String::from).to_vec();
        for (flag, path) in [("--tls-cert-file", &cert_file), ("--tls-key-file", &key_file), ("--tls-ca-cert-file", &ca_file)] {
            args.extend([flag.to_string(), path.display().to_string()]);
        }
        args.extend(["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""].map(String::from));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install it, e.g. `apt-get install redis-server`)");
        let mut server = TlsRedisServer { child, port, dir, ca_file };
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        poll_until(Duration::from_secs(10), Duration::from_millis(20), "the TLS redis-server accepts connections", async || {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "redis-server with --tls-port exited ({status}): it needs TLS support. Debian's redis-server (apt-get install \
                     redis-server) has it; a source build needs `make BUILD_TLS=yes`. Its log:\n{}",
                    read_log()
                );
            }
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        server
    }

    /// `rediss://127.0.0.1:{port}`, with `credentials` (`user:password@`) when given.
    pub fn tls_url(&self, credentials: &str) -> String {
        format!("rediss://{credentials}127.0.0.1:{}", self.port)
    }

    /// The same port named by a plain `redis://` URL (the mistake the gateway must call out).
    pub fn plain_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client over TLS that trusts the test CA, as `credentials` (`""`: the default user), for
    /// `ACL SETUSER` and the tests' checks.
    pub async fn client(&self, credentials: &str) -> fred::prelude::Client {
        // Built here, not by the gateway's own `RedisTarget`, so the tests do not lean on the code
        // they test.
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(&self.ca_file).unwrap();
        roots.add(ca).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut config = Config::from_url(&format!("redis://{credentials}127.0.0.1:{}", self.port)).unwrap();
        config.tls = Some(TlsConnector::from(tls).into());
        let client = Builder::from_config(config).build().unwrap();
        client.init().await.expect("the test's TLS redis-server answers over TLS with the test CA");
        client
    }

    /// Runs `ACL {args…}` as `client`.
    pub async fn acl(client: &fred::prelude::Client, args: &[&str]) {
        let command = fred::types::CustomCommand::new_static("ACL", fred::types::ClusterHash::FirstKey, false);
        let values: Vec<fred::types::Value> = args.iter().map(|a| (*a).into()).collect();
        let _: fred::types::Value = client.custom(command, values).await.unwrap_or_else(|e| panic!("ACL {args:?}: {e}"));
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, and a server certificate for `localhost` and `127.0.0.1` it signed: (CA PEM, cert PEM,
/// key PEM).
fn certificates() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "pam-gateway test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
