//! Where Redis is and how to speak to it (`REDIS_URL`, `PAM_REDIS_CA_FILE`): the URL as a fred
//! `Config`, with TLS for `rediss://` (rustls and ring, as everywhere else here; the system roots
//! plus the CA bundle), and the diagnosis of a connection that failed for a reason the URL can
//! fix — a plain `redis://` pointed at a TLS port otherwise looks exactly like a Redis that is
//! down. Used by the context cache (`context/redis_cache.rs`), the cluster (`cluster/`) and
//! `app.rs`; imports no other module of the crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::Config;
use fred::types::config::TlsConnector;
use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// How long the TLS sniff of a failed plain connection may take, connection included.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(1);

/// Why `REDIS_URL` (with `PAM_REDIS_CA_FILE`) cannot make a client; the start is refused with
/// one line that starts with the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum RedisTargetError {
    #[error("REDIS_URL is not a valid Redis URL: {0}")]
    Url(String),
    #[error("PAM_REDIS_CA_FILE={path} could not be read: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("PAM_REDIS_CA_FILE={path} holds no PEM certificate")]
    NoCaCertificate { path: PathBuf },
    #[error(
        "REDIS_URL is rediss:// but there are no CA roots to check the server with: install the system's CA certificates (Debian: ca-certificates) or set PAM_REDIS_CA_FILE"
    )]
    NoRoots,
    #[error("REDIS_URL is rediss:// but TLS could not be set up: {0}")]
    Tls(String),
}

/// `REDIS_URL` ready to connect to; cheap to clone (the TLS config is shared).
#[derive(Clone)]
pub struct RedisTarget {
    config: Config,
    /// The TLS config of a `rediss://` URL (also in `config`), for the diagnosis's own handshake.
    tls: Option<Arc<ClientConfig>>,
    /// `host:port`, for messages (never the credentials).
    address: String,
}

impl RedisTarget {
    /// The target of `url`: `redis://` (plain TCP) or `rediss://` (TLS, checked against the
    /// system roots plus the PEM certificates of `ca_file`), either with `user:password@`.
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, RedisTargetError> {
        let (scheme, rest) =
            url.trim().split_once("://").ok_or_else(|| RedisTargetError::Url("no scheme (redis:// or rediss://)".into()))?;
        let scheme = scheme.to_ascii_lowercase();
        let tls = scheme.starts_with("rediss") || scheme.starts_with("valkeys");
        // fred's own TLS set-up for `rediss://` refuses a system store with any unreadable file
        // and picks the process's crypto provider; ours is built below instead, so fred parses
        // the URL as plain and gets the TLS config afterwards.
        let parsed_scheme = if tls { scheme.replacen("rediss", "redis", 1).replacen("valkeys", "valkey", 1) } else { scheme };
        let mut config =
            Config::from_url(&format!("{parsed_scheme}://{rest}")).map_err(|e| RedisTargetError::Url(e.details().to_string()))?;
        let address = match &config.server {
            fred::types::config::ServerConfig::Centralized { server } => format!("{}:{}", server.host, server.port),
            _ => "the configured servers".into(),
        };
        let tls = if tls { Some(Arc::new(client_config(roots(ca_file)?)?)) } else { None };
        if let Some(tls) = &tls {
            config.tls = Some(TlsConnector::from(tokio_rustls::TlsConnector::from(tls.clone())).into());
        } else if let Some(path) = ca_file {
            tracing::warn!(
                path = %path.display(),
                "PAM_REDIS_CA_FILE is set but REDIS_URL is redis:// (plain TCP): the CA is not used; use rediss:// for TLS"
            );
        }
        Ok(Self { config, tls, address })
    }

    /// fred's config (connection settings are the caller's).
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// Whether the URL is `rediss://`.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `error` (why Redis did not answer) with what the URL can do about it, found by a TLS
    /// handshake of its own (fred's connection errors stay in its connection task; a command only
    /// times out): a plain URL whose port answers TLS must be `rediss://`; a `rediss://` server
    /// whose certificate does not verify needs `PAM_REDIS_CA_FILE` (or is not the one meant).
    pub async fn diagnose(&self, error: String) -> String {
        let address = &self.address;
        match &self.tls {
            None => {
                // No root is trusted: a TLS server is proven by its certificate (or an alert).
                let speaks_tls = match client_config(RootCertStore::empty()) {
                    Ok(config) => matches!(
                        self.handshake(Arc::new(config)).await,
                        Some(Ok(()) | Err(rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_)))
                    ),
                    Err(_) => false,
                };
                if speaks_tls {
                    return format!(
                        "{address} speaks TLS but REDIS_URL is redis:// (plain TCP): use rediss:// (TLS, as Upstash, Redis Cloud and ElastiCache require) ({error})"
                    );
                }
            }
            Some(config) => match self.handshake(config.clone()).await {
                Some(Err(rustls::Error::InvalidCertificate(why))) => {
                    return format!(
                        "the TLS certificate of {address} does not verify ({why:?}): if its CA is not a public one, set PAM_REDIS_CA_FILE to its PEM bundle ({error})"
                    );
                }
                Some(Err(why)) => return format!("the TLS handshake with {address} failed ({why}): is it a TLS port? ({error})"),
                _ => {}
            },
        }
        error
    }

    /// A TLS handshake with the server within `SNIFF_TIMEOUT`: `None` when it could not be
    /// reached or did not finish in time.
    async fn handshake(&self, config: Arc<ClientConfig>) -> Option<Result<(), rustls::Error>> {
        let fred::types::config::ServerConfig::Centralized { server } = &self.config.server else { return None };
        let name = ServerName::try_from(server.host.to_string()).ok()?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let handshake = async {
            let stream = tokio::net::TcpStream::connect((&*server.host, server.port)).await?;
            connector.connect(name, stream).await.map(drop)
        };
        match tokio::time::timeout(SNIFF_TIMEOUT, handshake).await {
            Ok(Ok(())) => Some(Ok(())),
            Ok(Err(error)) => error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).cloned().map(Err),
            Err(_) => None,
        }
    }
}

/// The system roots (those that load: one unreadable file in the store spoils no other) plus
/// every certificate of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, RedisTargetError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    if !system.errors.is_empty() {
        tracing::debug!(errors = ?system.errors, "some system CA certificates could not be read");
    }
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| RedisTargetError::CaFile { path: path.to_path_buf(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(RedisTargetError::NoCaCertificate { path: path.to_path_buf() });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| RedisTargetError::CaFile { path: path.to_path_buf(), reason: e.to_string() })?;
        }
    }
    if roots.is_empty() {
        return Err(RedisTargetError::NoRoots);
    }
    Ok(roots)
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, RedisTargetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RedisTargetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rediss_gets_tls_and_keeps_the_acl_user_and_password() {
        let target = RedisTarget::new("rediss://pam:s3cr%40t@cache.example.com:6380/2", None).unwrap();
        assert!(target.uses_tls());
        let config = target.config();
        assert!(config.tls.is_some());
        assert_eq!((config.username.as_deref(), config.password.as_deref(), config.database), (Some("pam"), Some("s3cr@t"), Some(2)));
        assert_eq!(target.address, "cache.example.com:6380");
    }

    #[test]
    fn redis_stays_plain() {
        let target = RedisTarget::new("redis://127.0.0.1:6379", None).unwrap();
        assert!(!target.uses_tls() && target.config().tls.is_none());
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused_naming_it() {
        let error = RedisTarget::new("rediss://h:6379", Some(Path::new("/nonexistent/ca.pem"))).err().unwrap().to_string();
        assert!(error.starts_with("PAM_REDIS_CA_FILE=/nonexistent/ca.pem could not be read"), "{error}");
        let empty = std::env::temp_dir().join(format!("pam-empty-ca-{}.pem", uuid::Uuid::new_v4().simple()));
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = RedisTarget::new("rediss://h:6379", Some(&empty)).err().unwrap().to_string();
        let _ = std::fs::remove_file(&empty);
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn a_url_that_is_not_one_is_refused() {
        for bad in ["localhost:6379", "rediss://"] {
            let error = RedisTarget::new(bad, None).err().unwrap().to_string();
            assert!(error.starts_with("REDIS_URL is not a valid Redis URL"), "{bad}: {error}");
        }
    }
}
