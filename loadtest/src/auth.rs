//! Tokens for virtual users: minted locally as Supabase-shaped HS256 JWTs from the gateway's
//! `SUPABASE_JWT_SECRET`, or fetched from a dev-auth gateway's `POST /dev/token`.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where tokens come from.
#[derive(Debug, Clone)]
pub enum Tokens {
    /// Sign locally with this HS256 secret.
    Secret(String),
    /// Ask the gateway at this `host:port` (`POST /dev/token`).
    DevToken(String),
}

impl Tokens {
    /// A secret when one is given, else the gateway's dev endpoint.
    pub fn new(secret: Option<String>, ws_url: &str) -> Self {
        match secret {
            Some(secret) => Tokens::Secret(secret),
            None => Tokens::DevToken(host_port(ws_url).to_string()),
        }
    }

    /// A valid token for `user`.
    pub async fn token_for(&self, user: &str) -> Result<String, String> {
        match self {
            Tokens::Secret(secret) => Ok(mint(secret, user)),
            Tokens::DevToken(host) => dev_token(host, user).await,
        }
    }
}

/// `ws://host:port/…` → `host:port`.
pub fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The user id of virtual user `n` (a valid v4 uuid).
pub fn user_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A Supabase-shaped access token valid for an hour.
pub fn mint(secret: &str, user: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = json!({"sub": user, "aud": "authenticated", "role": "authenticated", "exp": now + 3600, "iat": now});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("HS256 signing does not fail")
}

/// `POST /dev/token {"user_id"}` over plain HTTP/1.1 (dev auth only runs on loopback).
async fn dev_token(host: &str, user: &str) -> Result<String, String> {
    let body = json!({ "user_id": user }).to_string();
    let request = format!(
        "POST /dev/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(host).await.map_err(|e| format!("POST /dev/token: {e}"))?;
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("POST /dev/token: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.map_err(|e| format!("POST /dev/token: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("POST /dev/token: malformed response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("POST /dev/token: {} (is dev auth on? otherwise pass --secret)", head.lines().next().unwrap_or("")));
    }
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("POST /dev/token: {e}"))?;
    value["token"].as_str().map(str::to_string).ok_or_else(|| "POST /dev/token: no token in the answer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_endpoint_host_comes_from_the_ws_url() {
        assert_eq!(host_port("ws://127.0.0.1:8080/api/v1/pam/ws/x"), "127.0.0.1:8080");
        assert_eq!(host_port("ws://127.0.0.1:9"), "127.0.0.1:9");
    }

    #[test]
    fn minted_tokens_carry_the_user_and_audience() {
        let token = mint("s3cret", &user_id(7));
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["authenticated"]);
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &jsonwebtoken::DecodingKey::from_secret(b"s3cret"), &validation).unwrap();
        assert_eq!(data.claims["sub"], "00000000-0000-4000-8000-000000000007");
    }
}
