//! Newtypes for ids that cross the wire, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Not a canonical 8-4-4-4-12 hex uuid.
    NotUuid,
    /// Not 1–100 characters of `[A-Za-z0-9_-]`.
    BadSessionId,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::NotUuid => f.write_str("user id must be a uuid"),
            IdError::BadSessionId => f.write_str("session_id must be 1-100 characters of A-Z a-z 0-9 _ -"),
        }
    }
}

impl std::error::Error for IdError {}

/// A Supabase user id: a uuid, kept lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Parses a uuid in canonical hyphenated form, any case.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let bytes = raw.as_bytes();
        let well_formed = bytes.len() == 36
            && bytes.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        if well_formed { Ok(UserId(raw.to_ascii_lowercase())) } else { Err(IdError::NotUuid) }
    }

    /// The lowercase uuid text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A conversation session id chosen by the client: free text, never a uuid cast.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// The session used when a client sends none (today's client's habit).
    pub fn default_session() -> Self {
        SessionId("default".to_string())
    }

    /// Accepts `^[A-Za-z0-9_-]{1,100}$`.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = (1..=100).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(SessionId(raw.to_string())) } else { Err(IdError::BadSessionId) }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Serde and `Display` plumbing shared by the string ids: they (de)serialize as plain strings,
/// validated by `parse`.
macro_rules! string_id_conversions {
    ($($id:ident),*) => {$(
        impl TryFrom<String> for $id {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $id::parse(&value)
            }
        }

        impl From<$id> for String {
            fn from(value: $id) -> Self {
                value.0
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_id_conversions!(UserId, SessionId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_canonical_uuids_lowercased() {
        let id = UserId::parse("3F2504E0-4F89-41D3-9A0C-0305E82C3301").unwrap();
        assert_eq!(id.as_str(), "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
        for bad in ["", "default", "123", "3f2504e0-4f89-41d3-9a0c-0305e82c330", "3f2504e0x4f89-41d3-9a0c-0305e82c3301"] {
            assert_eq!(UserId::parse(bad), Err(IdError::NotUuid), "{bad}");
        }
    }

    #[test]
    fn session_ids_are_free_text_within_the_pattern() {
        for good in ["default", "a", "demo-123_x", &"x".repeat(100)] {
            assert!(SessionId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "semi;colon", "ünï", &"x".repeat(101)] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_round_trip_through_serde() {
        let json = serde_json::to_string(&SessionId::default_session()).unwrap();
        assert_eq!(json, "\"default\"");
        let back: SessionId = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), "default");
        assert!(serde_json::from_str::<UserId>("\"nope\"").is_err());
    }
}
