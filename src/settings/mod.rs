//! Settings: every env var of design.md, also a CLI flag, validated once at startup into one
//! struct. Optional parts are `Option`; their absence degrades a feature and is logged once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pam_actors::ConnectionSettings;

use crate::settings::secret::Secret;

mod checks;
mod load;
pub mod secret;

/// Default accurate Anthropic model when `PAM_ANTHROPIC_MODEL` is unset.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// Default fast Anthropic model when `PAM_ANTHROPIC_FAST_MODEL` is unset.
pub const DEFAULT_ANTHROPIC_FAST_MODEL: &str = "claude-haiku-4-5";
/// Default accurate OpenAI model when `PAM_OPENAI_MODEL` is unset.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4.1";
/// Default fast OpenAI model when `PAM_OPENAI_FAST_MODEL` is unset.
pub const DEFAULT_OPENAI_FAST_MODEL: &str = "gpt-4.1-mini";

// Deliberately not `Debug`: `DATABASE_URL` and `REDIS_URL` may carry passwords.
/// pam-gateway: the realtime backend of PAM.
#[derive(Clone, Parser)]
#[command(name = "pam-gateway", version, about)]
pub struct Settings {
    /// Bind address (port 0 picks a free port; the bound address is logged).
    #[arg(long, env = "PAM_LISTEN", default_value = "127.0.0.1:8080", value_parser = load::listen_address)]
    pub listen: SocketAddr,
    /// Postgres or SQLite URL.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://pam-gateway.db")]
    pub database_url: String,
    /// Redis URL; unset = in-process cache only.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis key prefix.
    #[arg(long, env = "PAM_CACHE_PREFIX", default_value = "pam")]
    pub cache_prefix: String,
    /// HS256 secret of the Supabase project.
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    pub supabase_jwt_secret: Option<Secret>,
    /// Supabase project URL (JWKS and issuer are derived from it).
    #[arg(long, env = "SUPABASE_URL")]
    pub supabase_url: Option<String>,
    /// JWKS URL override.
    #[arg(long, env = "PAM_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "PAM_JWT_AUDIENCE", default_value = "authenticated")]
    pub jwt_audience: String,
    /// Required `iss` claim (default `{SUPABASE_URL}/auth/v1` when SUPABASE_URL is set).
    #[arg(long, env = "PAM_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Development auth (`POST /dev/token`); default on only without JWT settings on loopback.
    #[arg(long, env = "PAM_DEV_AUTH")]
    pub dev_auth: Option<bool>,
    /// Comma list of allowed Origins for WebSocket and CORS (unset = any).
    #[arg(long, env = "PAM_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// Comma list of CIDRs (or addresses) of reverse proxies whose `X-Forwarded-For`/`Forwarded`
    /// name the client (unset = the TCP peer is the client).
    #[arg(long, env = "PAM_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// HMAC key for CSRF tokens (random per start when unset).
    #[arg(long, env = "PAM_CSRF_SECRET", hide_env_values = true)]
    pub csrf_secret: Option<Secret>,
    /// Bearer token for the monitoring endpoints.
    #[arg(long, env = "PAM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "PAM_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    #[arg(long, env = "PAM_PONG_TIMEOUT_MS", default_value_t = 70_000)]
    pub pong_timeout_ms: u64,
    #[arg(long, env = "PAM_AUTH_TIMEOUT_MS", default_value_t = 5_000)]
    pub auth_timeout_ms: u64,
    #[arg(long, env = "PAM_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,
    #[arg(long, env = "PAM_MAX_CONNECTIONS_PER_USER", default_value_t = 8)]
    pub max_connections_per_user: usize,
    /// Failed authentications per client IP per minute before its upgrades get 429 (0 = off).
    #[arg(long, env = "PAM_AUTH_FAILURES_PER_MINUTE", default_value_t = 5)]
    pub auth_failures_per_minute: usize,
    /// Chat frames per user per minute (ping/pong exempt).
    #[arg(long, env = "PAM_RATE_LIMIT_PER_MINUTE", default_value_t = 60)]
    pub rate_limit_per_minute: u32,
    #[arg(long, env = "PAM_MAX_MESSAGE_CHARS", default_value_t = 2_000)]
    pub max_message_chars: usize,
    #[arg(long, env = "PAM_MAX_FRAME_BYTES", default_value_t = 65_536)]
    pub max_frame_bytes: usize,
    /// Bytes (as JSON) a client's context may hold (`init`/`context_update` merged, or a chat's
    /// `context`); more is refused with `MESSAGE_TOO_LARGE` and the context stays as it was.
    #[arg(long, env = "PAM_MAX_CONTEXT_BYTES", default_value_t = 16_384)]
    pub max_context_bytes: usize,
    /// Frames queued per connection before it is closed with 4408.
    #[arg(long, env = "PAM_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,
    #[arg(long, env = "PAM_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Anthropic API key; set = Anthropic is the primary model.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<Secret>,
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = "https://api.anthropic.com")]
    pub anthropic_base_url: String,
    /// Model for ordinary turns.
    #[arg(long, env = "PAM_ANTHROPIC_MODEL", default_value = DEFAULT_ANTHROPIC_MODEL)]
    pub anthropic_model: String,
    /// Model for short, simple turns.
    #[arg(long, env = "PAM_ANTHROPIC_FAST_MODEL", default_value = DEFAULT_ANTHROPIC_FAST_MODEL)]
    pub anthropic_fast_model: String,
    /// OpenAI (or compatible) API key; set = used after Anthropic (or first without it).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,
    /// Base URL of an OpenAI-compatible API (with or without a trailing `/v1`).
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "https://api.openai.com")]
    pub openai_base_url: String,
    #[arg(long, env = "PAM_OPENAI_MODEL", default_value = DEFAULT_OPENAI_MODEL)]
    pub openai_model: String,
    #[arg(long, env = "PAM_OPENAI_FAST_MODEL", default_value = DEFAULT_OPENAI_FAST_MODEL)]
    pub openai_fast_model: String,
    /// Deadline for a model's first token before the next provider is tried.
    #[arg(long, env = "PAM_LLM_FIRST_TOKEN_TIMEOUT_MS", default_value_t = 10_000)]
    pub llm_first_token_timeout_ms: u64,
    /// Deadline for a whole answer, fallbacks included.
    #[arg(long, env = "PAM_LLM_TIMEOUT_MS", default_value_t = 30_000)]
    pub llm_timeout_ms: u64,
    #[arg(long, env = "PAM_PROFILE_TTL_S", default_value_t = 600)]
    pub profile_ttl_s: u64,
    #[arg(long, env = "PAM_FINANCIAL_TTL_S", default_value_t = 300)]
    pub financial_ttl_s: u64,
    #[arg(long, env = "PAM_SOCIAL_TTL_S", default_value_t = 300)]
    pub social_ttl_s: u64,
    /// How long a client may take to send a complete request head (also bounds the TLS handshake);
    /// idle or half-open connections are closed after it.
    #[arg(long, env = "PAM_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// PEM certificate chain; with `PAM_TLS_KEY` the gateway serves https/wss itself (reloaded on SIGHUP).
    #[arg(long, env = "PAM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `PAM_TLS_CERT`.
    #[arg(long, env = "PAM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Run migrations at startup.
    #[arg(long, env = "PAM_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// `pretty` or `json` (default: pretty on a terminal, json otherwise).
    #[arg(long, env = "PAM_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Conversation writes the database could not take are appended here (JSON lines, fsync) and
    /// replayed at the next start; an empty value turns the journal off (writes then wait in
    /// memory only and are lost at shutdown if the database is still down).
    #[arg(long, env = "PAM_OUTBOX_JOURNAL", default_value = "pam-outbox.jsonl")]
    pub outbox_journal: String,
    /// This node's name in logs, stored turns and (with Redis) presence; default: the hostname
    /// plus a random suffix.
    #[arg(long, env = "PAM_NODE_ID")]
    pub node_id: Option<String>,
    /// With Redis: how long this node's registration (and with it its share of every user's
    /// presence) outlives its last heartbeat; heartbeats come every third of it. A killed node
    /// is gone from `/api/v1/monitoring/nodes` and from the per-user cap within this time.
    #[arg(long, env = "PAM_NODE_TTL_MS", default_value_t = 15_000)]
    pub node_ttl_ms: u64,

    // Edge limits and conformance.
    /// Largest request head (request line and headers) in bytes; a longer one, even half-sent,
    /// gets 431 and the connection is closed at once (at least 8192, hyper's smallest read buffer).
    #[arg(long, env = "PAM_MAX_HEADER_BYTES", default_value_t = 16_384)]
    pub max_header_bytes: usize,
    /// Mount `GET /conformance/echo`, a raw WebSocket echo for the Autobahn testsuite (loopback binds only).
    #[arg(long, env = "PAM_CONFORMANCE_ECHO", default_value_t = false, action = clap::ArgAction::Set)]
    pub conformance_echo: bool,
}

/// hyper's smallest read buffer (`http1::Builder::max_buf_size` panics below it).
pub const MIN_HEADER_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A setting that cannot work, found at startup.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Invalid(String),
}

/// How tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub hs256_secret: Option<Secret>,
    pub jwks_url: Option<String>,
    pub audience: String,
    pub issuer: Option<String>,
    pub dev_auth: bool,
}

impl Settings {
    /// Settings from the environment and defaults, without CLI arguments (tests adjust fields).
    pub fn defaults() -> Self {
        Settings::parse_from(["pam-gateway"])
    }

    /// Checks that the settings can work together and derives the auth setup.
    pub fn validate(&self) -> Result<AuthSettings, SettingsError> {
        self.validate_edge()?;
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        checks::check(self)?;
        if self.ping_interval_ms == 0 || self.pong_timeout_ms == 0 {
            return invalid("PAM_PING_INTERVAL_MS and PAM_PONG_TIMEOUT_MS must be above 0".into());
        }
        if self.pong_timeout_ms <= self.ping_interval_ms {
            return invalid(format!(
                "PAM_PONG_TIMEOUT_MS ({}) must be longer than PAM_PING_INTERVAL_MS ({}) or every peer would time out",
                self.pong_timeout_ms, self.ping_interval_ms
            ));
        }
        if self.outbound_queue == 0 || self.max_frame_bytes < 256 || self.max_message_chars == 0 {
            return invalid("PAM_OUTBOUND_QUEUE, PAM_MAX_MESSAGE_CHARS must be above 0 and PAM_MAX_FRAME_BYTES at least 256".into());
        }
        if self.llm_first_token_timeout_ms == 0 || self.llm_timeout_ms == 0 {
            return invalid("PAM_LLM_FIRST_TOKEN_TIMEOUT_MS and PAM_LLM_TIMEOUT_MS must be above 0".into());
        }
        if self.header_read_timeout_ms == 0 {
            return invalid("PAM_HEADER_READ_TIMEOUT_MS must be above 0".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("PAM_TLS_CERT and PAM_TLS_KEY must be set together (or neither, for plain HTTP behind a proxy)".into());
        }
        let supabase = self.supabase_url.as_deref().map(|u| u.trim_end_matches('/').to_string());
        let jwks_url = self.jwks_url.clone().or_else(|| supabase.as_ref().map(|u| format!("{u}/auth/v1/.well-known/jwks.json")));
        let issuer = self.jwt_issuer.clone().or_else(|| supabase.as_ref().map(|u| format!("{u}/auth/v1")));
        let has_jwt = self.supabase_jwt_secret.as_ref().is_some_and(|s| !s.expose().is_empty()) || jwks_url.is_some();
        let loopback = self.listen.ip().is_loopback();
        let dev_auth = self.dev_auth.unwrap_or(!has_jwt && loopback);
        if dev_auth && !loopback {
            return invalid(format!("refusing to start: dev auth is only allowed on a loopback bind, not {}", self.listen));
        }
        if !has_jwt && !dev_auth {
            return invalid(format!(
                "refusing to start: no JWT settings (SUPABASE_JWT_SECRET, SUPABASE_URL or PAM_JWKS_URL) for a {} bind",
                if loopback { "loopback" } else { "non-loopback" }
            ));
        }
        Ok(AuthSettings {
            hs256_secret: self.supabase_jwt_secret.clone().filter(|s| !s.expose().is_empty()),
            jwks_url,
            audience: self.jwt_audience.clone(),
            issuer,
            dev_auth,
        })
    }

    /// The edge settings: a header cap hyper can apply, the conformance echo only on loopback.
    fn validate_edge(&self) -> Result<(), SettingsError> {
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(SettingsError::Invalid(format!("PAM_MAX_HEADER_BYTES must be at least {MIN_HEADER_BYTES}")));
        }
        if self.conformance_echo && !self.listen.ip().is_loopback() {
            return Err(SettingsError::Invalid(format!(
                "refusing to start: PAM_CONFORMANCE_ECHO is only allowed on a loopback bind, not {}",
                self.listen
            )));
        }
        Ok(())
    }

    pub fn connection_settings(&self) -> ConnectionSettings {
        ConnectionSettings {
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            pong_timeout: Duration::from_millis(self.pong_timeout_ms),
            auth_timeout: Duration::from_millis(self.auth_timeout_ms),
            max_message_chars: self.max_message_chars,
            max_context_bytes: self.max_context_bytes,
            rate_limit_per_minute: self.rate_limit_per_minute,
            outbound_queue: self.outbound_queue,
            llm_timeout: Duration::from_millis(self.llm_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            ..ConnectionSettings::default()
        }
    }

    /// `PAM_ALLOWED_ORIGINS` as a list (no trailing slashes); `None` = any origin.
    pub fn allowed_origins_list(&self) -> Option<Vec<String>> {
        let list: Vec<String> = self
            .allowed_origins
            .as_deref()?
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        (!list.is_empty()).then_some(list)
    }

    /// `ANTHROPIC_API_KEY` when set and not empty.
    pub fn anthropic_key(&self) -> Option<&str> {
        self.anthropic_api_key.as_ref().and_then(Secret::non_empty)
    }

    /// `OPENAI_API_KEY` when set and not empty.
    pub fn openai_key(&self) -> Option<&str> {
        self.openai_api_key.as_ref().and_then(Secret::non_empty)
    }

    /// `PAM_NODE_ID`, or the hostname plus a random suffix (so two processes on one host differ).
    pub fn node_id(&self) -> String {
        if let Some(id) = self.node_id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
            return id.to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "pam".into());
        // Node ids name Redis keys: keep them to the characters `PAM_NODE_ID` allows.
        let host: String =
            host.chars().take(48).map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}-{}", &suffix[..6])
    }

    /// `PAM_NODE_TTL_MS`.
    pub fn node_ttl(&self) -> Duration {
        Duration::from_millis(self.node_ttl_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The certificate and key paths when TLS is on (`validate` checked they come together).
    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        self.tls_cert.clone().zip(self.tls_key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_dev_auth_on_loopback() {
        let auth = Settings::defaults().validate().unwrap();
        assert!(auth.dev_auth);
        assert_eq!(auth.audience, "authenticated");
    }

    #[test]
    fn non_loopback_without_jwt_settings_refuses_with_one_line() {
        let mut settings = Settings::defaults();
        settings.listen = "0.0.0.0:8080".parse().unwrap();
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.starts_with("refusing to start: no JWT settings"), "{error}");
        assert!(!error.contains('\n'));
        settings.dev_auth = Some(true);
        assert!(settings.validate().unwrap_err().to_string().contains("only allowed on a loopback bind"));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let mut settings = Settings::defaults();
        settings.supabase_jwt_secret = Some("jwt-secret-value".into());
        settings.csrf_secret = Some("csrf-secret-value".into());
        settings.anthropic_api_key = Some("sk-ant-value".into());
        settings.openai_api_key = Some("sk-openai-value".into());
        let auth = settings.validate().unwrap();
        // `Settings` has no `Debug` at all (its URLs may carry passwords); its secret fields and
        // the derived auth settings print redacted.
        let printed = format!(
            "{auth:?} {:?} {:?} {:?} {:?}",
            settings.supabase_jwt_secret, settings.csrf_secret, settings.anthropic_api_key, settings.openai_api_key
        );
        for secret in ["jwt-secret-value", "csrf-secret-value", "sk-ant-value", "sk-openai-value"] {
            assert!(!printed.contains(secret), "{secret} leaked into Debug output");
        }
        assert_eq!(settings.anthropic_key(), Some("sk-ant-value"));
    }

    #[test]
    fn supabase_url_derives_jwks_and_issuer() {
        let mut settings = Settings::defaults();
        settings.supabase_url = Some("https://abc.supabase.co/".into());
        let auth = settings.validate().unwrap();
        assert_eq!(auth.jwks_url.as_deref(), Some("https://abc.supabase.co/auth/v1/.well-known/jwks.json"));
        assert_eq!(auth.issuer.as_deref(), Some("https://abc.supabase.co/auth/v1"));
        assert!(!auth.dev_auth, "JWT settings switch dev auth off by default");
    }

    #[test]
    fn tls_cert_and_key_come_together() {
        let mut settings = Settings::defaults();
        settings.tls_cert = Some("cert.pem".into());
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("PAM_TLS_CERT and PAM_TLS_KEY must be set together"), "{error}");
        settings.tls_key = Some("key.pem".into());
        assert!(settings.validate().is_ok());
        assert_eq!(settings.tls_paths(), Some(("cert.pem".into(), "key.pem".into())));
    }

    #[test]
    fn the_conformance_echo_refuses_a_non_loopback_bind_with_one_line_naming_the_setting() {
        let mut settings = Settings::defaults();
        settings.conformance_echo = true;
        assert!(settings.validate().is_ok(), "loopback is fine");
        settings.listen = "0.0.0.0:8080".parse().unwrap();
        settings.supabase_jwt_secret = Some("jwt-secret-value".into());
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.starts_with("refusing to start: PAM_CONFORMANCE_ECHO"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn a_header_cap_below_hypers_minimum_is_refused() {
        let mut settings = Settings::defaults();
        settings.max_header_bytes = MIN_HEADER_BYTES - 1;
        assert!(settings.validate().unwrap_err().to_string().contains("PAM_MAX_HEADER_BYTES"));
        settings.max_header_bytes = MIN_HEADER_BYTES;
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn a_node_id_that_cannot_name_redis_keys_or_a_node_ttl_too_short_for_a_heartbeat_is_refused() {
        let mut settings = Settings::defaults();
        settings.node_id = Some("pod-7.eu_west-1".into());
        assert!(settings.validate().is_ok());
        for bad in ["has space", "a/b", "a:b", &"n".repeat(65)] {
            settings.node_id = Some(bad.into());
            assert!(settings.validate().unwrap_err().to_string().starts_with("PAM_NODE_ID"), "{bad}");
        }
        settings.node_id = None;
        settings.node_ttl_ms = 299;
        assert!(settings.validate().unwrap_err().to_string().starts_with("PAM_NODE_TTL_MS"));
        let generated = Settings::defaults().node_id();
        assert!(generated.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')), "{generated}");
    }

    #[test]
    fn pong_timeout_must_exceed_ping_interval() {
        let mut settings = Settings::defaults();
        settings.pong_timeout_ms = settings.ping_interval_ms;
        assert!(settings.validate().is_err());
    }
}
