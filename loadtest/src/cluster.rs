//! What the scale-out scenarios (`failover`, `push`, `timers`) share: two running gateway nodes
//! named by `--url` twice, tokens for run-unique users, v2 sockets (read with
//! [`pam_loadtest::client::next_v2`], so every numbered frame, pings included, reaches the caller),
//! the HTTP base of a node, and the pacing of an offered rate.

use std::time::Duration;

use serde_json::Value;

use pam_loadtest::auth::{Tokens, host_port};
use pam_loadtest::client::{self, Socket};

/// Two running nodes of one cluster (same Postgres, same Redis).
#[derive(clap::Args, Clone)]
pub(crate) struct TwoNodes {
    /// The two nodes' base URLs, node A first: `--url ws://127.0.0.1:8081 --url ws://127.0.0.1:8082`.
    #[arg(long = "url", num_args = 1, required = true, value_parser = pam_loadtest::target::parse_ws_url)]
    urls: Vec<String>,
    /// HS256 secret both nodes verify with; without it tokens come from node A's `POST /dev/token`.
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

impl TwoNodes {
    /// Node A, node B and the token source; an error unless exactly two URLs were given.
    pub(crate) fn resolve(&self) -> Result<(String, String, Tokens), String> {
        match self.urls.as_slice() {
            [a, b] => Ok((a.clone(), b.clone(), Tokens::new(self.secret.clone(), a))),
            urls => Err(format!("give exactly two --url (node A, node B), not {}", urls.len())),
        }
    }
}

/// `ws://host:port` → `http://host:port`.
pub(crate) fn http_base(ws: &str) -> String {
    format!("http://{}", host_port(ws))
}

/// A user id unique to this run (`salt` from [`run_salt`]): timers and stored pushes of an earlier
/// run never reach it.
pub(crate) fn run_user(salt: u32, n: usize) -> String {
    format!("{salt:08x}-0000-4000-8000-{n:012}")
}

/// A per-run salt for [`run_user`].
pub(crate) fn run_salt() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Mints or fetches a token for each of `users`, `concurrency` at a time.
pub(crate) async fn tokens_for(tokens: &Tokens, users: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(users.len());
    for chunk in users.chunks(64) {
        let fetched = futures_util::future::join_all(chunk.iter().map(|user| tokens.token_for(user))).await;
        for token in fetched {
            out.push(token?);
        }
    }
    Ok(out)
}

/// Connects to `base`'s v2 endpoint with `token` and returns the socket and its `welcome`.
pub(crate) async fn connect_v2(base: &str, token: &str) -> Result<(Socket, Value), String> {
    let (session, welcome) = client::connect_url(&format!("{base}/api/v2/pam/ws?token={token}"), "welcome").await?;
    Ok((session.socket, welcome))
}

/// How many sends an offered `rate` (per second) owes after `elapsed`, given `done` so far:
/// the pacer sends them in one burst each millisecond tick, so the rate holds on average even
/// when a tick comes late.
pub(crate) fn due(elapsed: Duration, rate: f64, done: u64) -> u64 {
    ((elapsed.as_secs_f64() * rate).floor() as u64).saturating_sub(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_owes_the_rate_times_the_elapsed_time_minus_what_went_out() {
        assert_eq!(due(Duration::from_millis(1), 1000.0, 0), 1);
        assert_eq!(due(Duration::from_millis(1), 10_000.0, 0), 10);
        assert_eq!(due(Duration::from_millis(250), 10_000.0, 2400), 100);
        assert_eq!(due(Duration::from_millis(10), 10_000.0, 500), 0, "never negative after a burst");
    }

    #[test]
    fn run_users_are_valid_uuids_unique_to_their_run() {
        let user = run_user(0xdead_beef, 42);
        assert_eq!(user, "deadbeef-0000-4000-8000-000000000042");
        assert!(uuid::Uuid::parse_str(&user).is_ok());
        assert_ne!(run_user(1, 42), run_user(2, 42));
    }

    #[test]
    fn a_node_is_reached_over_http_at_its_ws_host() {
        assert_eq!(http_base("ws://127.0.0.1:8081"), "http://127.0.0.1:8081");
    }
}
