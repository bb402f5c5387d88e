//! TLS termination from `PAM_TLS_CERT`/`PAM_TLS_KEY` (rustls with ring, TLS 1.2+), reloadable at
//! run time: `TlsFiles::reload` (called on SIGHUP) swaps the config used by new handshakes and
//! leaves established sockets alone; a bad new file keeps the old certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read the certificate PAM_TLS_CERT={path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("could not read the private key PAM_TLS_KEY={path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a TLS config: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate files and the config built from them; cheap to clone (shared).
#[derive(Clone)]
pub struct TlsFiles {
    inner: Arc<Inner>,
}

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsFiles {
    /// Loads both files; any problem is a startup error naming the file.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let config = server_config(&cert, &key)?;
        Ok(TlsFiles { inner: Arc::new(Inner { cert, key, current: RwLock::new(config) }) })
    }

    /// Re-reads the files for new handshakes. On error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        match server_config(&self.inner.cert, &self.inner.key) {
            Ok(config) => {
                *self.inner.current.write().unwrap_or_else(|p| p.into_inner()) = config;
                tracing::info!(cert = %self.inner.cert.display(), "TLS certificate reloaded; new handshakes use it");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "TLS reload failed; keeping the previous certificate");
                Err(error)
            }
        }
    }

    /// An acceptor with the current config.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.inner.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Reloads `tls` on every SIGHUP (unix) for as long as the process runs. The handler is set up
/// before this returns, so a SIGHUP right after startup does not kill the process.
pub fn reload_on_sighup(tls: TlsFiles) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                // One log line either way, written by reload.
                let _ = tls.reload();
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
    Ok(())
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_error = |reason: String| TlsError::Cert { path: cert_path.to_path_buf(), reason };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no PEM CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key { path: key_path.to_path_buf(), reason: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("pam-tls-unit-{}-{name}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_missing_or_garbage_file_is_a_clear_error_naming_the_setting() {
        let error = TlsFiles::load("/nonexistent/cert.pem".into(), "/nonexistent/key.pem".into()).err().unwrap().to_string();
        assert!(error.starts_with("could not read the certificate PAM_TLS_CERT=/nonexistent/cert.pem"), "{error}");
        let cert = temp("cert.pem", "not a certificate");
        let error = TlsFiles::load(cert.clone(), "/nonexistent/key.pem".into()).err().unwrap().to_string();
        assert!(error.contains("no PEM CERTIFICATE block"), "{error}");
        let _ = std::fs::remove_file(cert);
    }
}
