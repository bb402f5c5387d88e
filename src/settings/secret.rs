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
}
