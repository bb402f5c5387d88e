//! CSRF tokens for the settings routes: `{unix_ts}.{hex HMAC-SHA256(PAM_CSRF_SECRET,
//! "{user_id}:{unix_ts}")}`, valid for an hour, bound to the user. Every malformed shape is a
//! `CsrfError` (the HTTP layer answers 403 `CSRF_INVALID`), never a panic; the MAC is compared
//! in constant time and tokens are never logged.

use hmac::{Hmac, Mac};
use pam_protocol::UserId;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a token is valid.
pub const CSRF_TTL_SECS: u64 = 60 * 60;
/// Tolerated clock difference between the nodes that issue and check a token.
const CLOCK_SKEW_SECS: u64 = 60;
/// A well-formed token is at most 20 digits, a dot and 64 hex digits.
const MAX_TOKEN_LEN: usize = 20 + 1 + 64;

/// Why a token was refused (for logs and tests; the client only sees `CSRF_INVALID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("no CSRF token")]
    Missing,
    #[error("CSRF token is malformed")]
    Malformed,
    #[error("CSRF token has expired")]
    Expired,
    #[error("CSRF token is dated in the future")]
    FromTheFuture,
    #[error("CSRF token does not match")]
    Forged,
}

/// Issues and checks tokens with one secret.
pub struct CsrfKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for CsrfKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKeys(..)")
    }
}

impl CsrfKeys {
    /// `PAM_CSRF_SECRET`, or a random secret for this process when unset or empty (tokens then
    /// stop working across restarts and nodes, which the README says).
    pub fn new(secret: Option<&str>) -> Self {
        match secret.filter(|s| !s.is_empty()) {
            Some(secret) => Self { secret: secret.as_bytes().to_vec() },
            None => {
                let random: Vec<u8> = (0..2).flat_map(|_| uuid::Uuid::new_v4().into_bytes()).collect();
                Self { secret: random }
            }
        }
    }

    fn mac(&self, user: &UserId, timestamp: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(format!("{user}:{timestamp}").as_bytes());
        mac
    }

    /// A token for `user` issued at `now` (unix seconds).
    pub fn issue(&self, user: &UserId, now: u64) -> String {
        let tag = self.mac(user, now).finalize().into_bytes();
        format!("{now}.{}", to_hex(&tag))
    }

    /// Checks `token` for `user` at `now` (unix seconds).
    pub fn verify(&self, user: &UserId, token: Option<&str>, now: u64) -> Result<(), CsrfError> {
        let token = token.ok_or(CsrfError::Missing)?;
        if token.is_empty() {
            return Err(CsrfError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(CsrfError::Malformed);
        }
        let (timestamp, tag) = token.split_once('.').ok_or(CsrfError::Malformed)?;
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CsrfError::Malformed);
        }
        let timestamp: u64 = timestamp.parse().map_err(|_| CsrfError::Malformed)?;
        let tag = from_hex(tag).ok_or(CsrfError::Malformed)?;
        if tag.len() != 32 {
            return Err(CsrfError::Malformed);
        }
        if timestamp > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(CsrfError::FromTheFuture);
        }
        if now.saturating_sub(timestamp) > CSRF_TTL_SECS {
            return Err(CsrfError::Expired);
        }
        self.mac(user, timestamp).verify_slice(&tag).map_err(|_| CsrfError::Forged)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase or uppercase hex to bytes; `None` for odd length or any other character.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    // Checked up front: `u8::from_str_radix` alone would take "+f" for 0x0f.
    if text.is_empty() || text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn user(n: u8) -> UserId {
        UserId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02}")).unwrap()
    }

    #[test]
    fn the_token_is_the_documented_hmac() {
        // Known answer computed independently: printf '%s' '00000000-0000-4000-8000-000000000001:1800000000' |
        //   openssl dgst -sha256 -hmac secret
        let keys = CsrfKeys::new(Some("secret"));
        assert_eq!(keys.issue(&user(1), NOW), format!("{NOW}.{KNOWN_TAG}"));
    }

    const KNOWN_TAG: &str = "b19cd3dc15626cdf3973b799ae3c9a9bb049ad15fd046fc97dc5b9bd568582eb";

    #[test]
    fn a_fresh_token_passes_for_its_user_only() {
        let keys = CsrfKeys::new(Some("secret"));
        let token = keys.issue(&user(1), NOW);
        assert_eq!(keys.verify(&user(1), Some(&token), NOW + 10), Ok(()));
        assert_eq!(keys.verify(&user(2), Some(&token), NOW + 10), Err(CsrfError::Forged));
        assert_eq!(CsrfKeys::new(Some("other")).verify(&user(1), Some(&token), NOW), Err(CsrfError::Forged));
    }

    #[test]
    fn every_bad_shape_is_an_error_not_a_panic() {
        let keys = CsrfKeys::new(Some("secret"));
        let good = keys.issue(&user(1), NOW);
        let (_, tag) = good.split_once('.').unwrap();
        let cases = [
            (None, CsrfError::Missing),
            (Some(String::new()), CsrfError::Missing),
            (Some(format!("{tag}:{NOW}")), CsrfError::Malformed),
            (Some(format!("{NOW}{tag}")), CsrfError::Malformed),
            (Some(format!("{NOW}.{}", "zz".repeat(32))), CsrfError::Malformed),
            (Some(format!("{NOW}.{}", &tag[..63])), CsrfError::Malformed),
            // The real tag with its "04" byte written "+4": same value for `from_str_radix`.
            (Some(format!("{NOW}.{}+{}", &tag[..42], &tag[43..])), CsrfError::Malformed),
            (Some(format!("{NOW}.é{}", &tag[2..])), CsrfError::Malformed),
            (Some("9".repeat(10_000)), CsrfError::Malformed),
            (Some(format!("-1.{tag}")), CsrfError::Malformed),
            (Some(format!("99999999999999999999.{tag}")), CsrfError::Malformed),
            (Some(keys.issue(&user(1), NOW + 3600)), CsrfError::FromTheFuture),
            (Some(keys.issue(&user(1), NOW - 3601)), CsrfError::Expired),
            (Some(format!("{}.{tag}", NOW + 1)), CsrfError::Forged),
        ];
        for (token, expected) in cases {
            assert_eq!(keys.verify(&user(1), token.as_deref(), NOW), Err(expected), "{token:?}");
        }
    }
}
