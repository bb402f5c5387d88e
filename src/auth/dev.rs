//! Development auth: an HS256 secret and `POST /dev/token`, on loopback only. With a SQLite
//! database file the secret is kept beside it (`{db}.dev-key`, created 0600 on first start), so
//! dev tokens (and a demo page's open session) stay valid across restarts; otherwise (Postgres,
//! in-memory SQLite) it is random per start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jsonwebtoken::{EncodingKey, Header, encode};
use pam_protocol::UserId;
use serde::Serialize;

/// The demo traveller `/dev/token` speaks for when no `user_id` is given.
pub const DEMO_USER_ID: &str = "5e1f0c3a-7d2b-4c8e-9a41-d3e0000000a1";
/// Lifetime of a dev token unless the request names one.
pub const DEV_TOKEN_TTL_SECS: u64 = 3600;
/// The shortest and longest lifetimes a request may ask for (seconds): short ones exist to try
/// `auth_expiring` / `auth_refresh`, and a day is plenty for a demo.
pub const DEV_TOKEN_TTL_RANGE: std::ops::RangeInclusive<u64> = 10..=86_400;
/// Suffix of the key file beside the SQLite database file.
pub const DEV_KEY_SUFFIX: &str = ".dev-key";
/// The secret's length in the key file: 32 random bytes as 64 hex digits.
const KEY_HEX_LEN: usize = 64;

/// Mints dev tokens shaped like Supabase's.
pub struct DevAuth {
    secret: Vec<u8>,
    audience: String,
    issuer: String,
}

#[derive(Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    aud: &'a str,
    iss: &'a str,
    role: &'a str,
    email: String,
    exp: u64,
    iat: u64,
    session_id: String,
    is_anonymous: bool,
}

/// A minted token: `expires_at` is unix seconds.
#[derive(Debug, Serialize)]
pub struct DevToken {
    pub token: String,
    pub user_id: String,
    pub expires_at: u64,
}

impl DevAuth {
    /// A fresh random secret (two v4 uuids: 244 random bits).
    pub fn new(audience: &str, issuer: Option<&str>) -> Self {
        Self { secret: random_secret(), audience: audience.into(), issuer: issuer.unwrap_or("pam-gateway-dev").into() }
    }

    /// The secret kept in `key_file` (created 0600 with a random one when missing), or a random
    /// per-start one when there is no file to keep it in.
    /// Errors: the file cannot be created or read, or does not hold 64 hex digits.
    pub fn open(audience: &str, issuer: Option<&str>, key_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut auth = Self::new(audience, issuer);
        if let Some(path) = key_file {
            auth.secret = load_or_create(path, &auth.secret)?;
            tracing::info!(path = %path.display(), "dev auth signs with the key kept beside the database");
        }
        Ok(auth)
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The issuer dev tokens carry (the configured one, when set).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `user` valid for `ttl_secs` (the caller bounds it).
    pub fn mint(&self, user: &UserId, ttl_secs: u64) -> Result<DevToken, jsonwebtoken::errors::Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let expires_at = now + ttl_secs;
        let claims = DevClaims {
            sub: user.as_str(),
            aud: &self.audience,
            iss: &self.issuer,
            role: "authenticated",
            email: format!("traveller+{}@dev.pam.local", &user.as_str()[..8]),
            exp: expires_at,
            iat: now,
            session_id: uuid::Uuid::new_v4().to_string(),
            is_anonymous: false,
        };
        let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(&self.secret))?;
        Ok(DevToken { token, user_id: user.to_string(), expires_at })
    }
}

/// Where the key of a `sqlite:` database file lives: `{file}.dev-key`; `None` for other URLs and
/// in-memory SQLite (nothing outlives the process there anyway).
pub fn key_file_for(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") || path.starts_with("file::memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}{DEV_KEY_SUFFIX}")))
}

fn random_secret() -> Vec<u8> {
    let mut secret = uuid::Uuid::new_v4().as_bytes().to_vec();
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret
}

/// Reads the key, or writes `fresh` with `create_new` (so two starts racing end up with one key:
/// the loser reads the winner's) and mode 0600 from the first byte on.
fn load_or_create(path: &Path, fresh: &[u8]) -> anyhow::Result<Vec<u8>> {
    // Written whole to a temporary file, then linked into place: a crash mid-write never leaves
    // an empty key behind, and of two racing first starts exactly one key wins.
    let temp = path.with_extension(format!("dev-key.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temp)
        .and_then(|mut file| file.write_all(hex::encode(fresh).as_bytes()).and_then(|()| file.sync_all()))
        .with_context(|| format!("could not write the dev auth key {}", temp.display()));
    let linked = written.and_then(|()| match std::fs::hard_link(&temp, path) {
        Ok(()) => Ok(fresh.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e).with_context(|| format!("could not create the dev auth key {}", path.display())),
    });
    let _ = std::fs::remove_file(&temp);
    linked
}

fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read the dev auth key {}", path.display()))?;
    let text = text.trim();
    // A racing first start may not have written it yet; an empty file is never a key.
    anyhow::ensure!(
        text.len() == KEY_HEX_LEN,
        "the dev auth key {} is not {KEY_HEX_LEN} hex digits; delete it to get a new one",
        path.display()
    );
    hex::decode(text).with_context(|| format!("the dev auth key {} is not hex; delete it to get a new one", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sqlite_files_get_a_key_file() {
        assert_eq!(key_file_for("sqlite://pam-gateway.db"), Some(PathBuf::from("pam-gateway.db.dev-key")));
        assert_eq!(key_file_for("sqlite:///tmp/x.db?mode=rwc"), Some(PathBuf::from("/tmp/x.db.dev-key")));
        assert_eq!(key_file_for("sqlite:data.db"), Some(PathBuf::from("data.db.dev-key")));
        assert_eq!(key_file_for("sqlite::memory:"), None);
        assert_eq!(key_file_for("postgres://u@h/db"), None);
    }
}
