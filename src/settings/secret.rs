//! `Secret`: a setting that must never reach a log line. Its `Debug` prints a placeholder, so
//! `?settings` (or a panic message holding one) cannot leak a key; the value is read only
//! through `expose`, which makes every use easy to find.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `None` for a blank value (an empty env var means "unset").
    pub fn non_empty(&self) -> Option<&str> {
        Some(self.0.trim()).filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = Infallible;
    fn from_str(value: &str) -> Result<Self, Infallible> {
        Ok(Secret(value.to_string()))
    }
}

/// `url` fit for a log line or an error: the password of its user part and any `password=`
/// query parameter become `***` (`postgres://user:***@host/db`). Works on text that is not a
/// valid URL too, so a refusal can quote what was set.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let redacted: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().contains("password") => format!("{key}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", redacted.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{head}{authority}{tail}")
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from("sk-live-123");
        assert!(!format!("{secret:?} {:?}", Some(secret.clone())).contains("sk-live"));
        assert_eq!(secret.expose(), "sk-live-123");
        assert_eq!(Secret::from("  ").non_empty(), None);
    }

    #[test]
    fn urls_lose_their_passwords_and_keep_the_rest() {
        let cases = [
            ("postgres://pam:s3cret@db.example:5432/pam", "postgres://pam:***@db.example:5432/pam"),
            ("postgres://pam@db.example/pam", "postgres://pam@db.example/pam"),
            ("rediss://default:p@ss@cache.example:6380", "rediss://default:***@cache.example:6380"),
            ("redis://:token@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
            ("postgres://db/pam?sslmode=require&password=x", "postgres://db/pam?sslmode=require&password=***"),
            ("sqlite://pam-gateway.db", "sqlite://pam-gateway.db"),
            ("sqlite:pam.db", "sqlite:pam.db"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
