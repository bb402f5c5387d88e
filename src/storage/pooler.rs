//! Postgres behind a connection pooler (Supabase's session pooler, or its transaction pooler on
//! port 6543: PgBouncer or Supavisor with `pool_mode = transaction`). The gateway's own statements
//! are all unnamed (`.persistent(false)`), so they run through any of them; what still needs a
//! session of its own is the migrations (sqlx's migrator holds a session advisory lock and names
//! its statements) and `LISTEN`. Behind a transaction pooler both break silently: the lock and the
//! listen stay on a server connection other clients then get, and notifications reach nobody. So
//! they go to `DATABASE_DIRECT_URL` when set, and without it a transaction pooler is refused.

use std::collections::HashSet;

use sqlx::postgres::PgPool;

/// The port Supabase's transaction pooler listens on; a direct server is never told to use it.
const SUPABASE_TRANSACTION_POOLER_PORT: u16 = 6543;

/// How many times each of two connections asks for its backend: enough that a transaction pooler
/// that happens to hand out distinct server connections once still shows itself.
const PROBE_ROUNDS: usize = 3;

/// `url` without `pgbouncer=true` (Prisma's marker, which Supabase's dashboard appends: sqlx would
/// only warn that it ignores it), and whether it was there.
pub(crate) fn strip_pgbouncer_flag(url: &str) -> (String, bool) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), false) };
    let mut flagged = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let flag = pair.split_once('=').is_some_and(|(key, _)| key.eq_ignore_ascii_case("pgbouncer"));
            flagged |= flag;
            !flag && !pair.is_empty()
        })
        .collect();
    match kept.is_empty() {
        true => (base.to_string(), flagged),
        false => (format!("{base}?{}", kept.join("&")), flagged),
    }
}

/// What the URL alone says: the `pgbouncer=true` marker, or Supabase's transaction pooler port.
pub(crate) fn named_as_transaction_pooler(flagged: bool, port: u16) -> bool {
    flagged || port == SUPABASE_TRANSACTION_POOLER_PORT
}

/// Whether `pool` reaches Postgres through a transaction (or statement) pooler. A session (direct,
/// or a session pooler) keeps one backend per client connection for its whole life, distinct from
/// every other open connection's; a transaction pooler hands each transaction whichever server
/// connection is idle, so two client connections taking turns share one, or one client's moves.
/// Asked without any session state, so the probe itself leaves nothing behind on a pooled server.
pub(crate) async fn transaction_pooled(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let mut first = pool.acquire().await?;
    let mut second = pool.acquire().await?;
    let (mut first_pids, mut second_pids) = (HashSet::new(), HashSet::new());
    for _ in 0..PROBE_ROUNDS {
        first_pids.insert(backend_pid(&mut first).await?);
        second_pids.insert(backend_pid(&mut second).await?);
    }
    Ok(first_pids.len() > 1 || second_pids.len() > 1 || !first_pids.is_disjoint(&second_pids))
}

async fn backend_pid(connection: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()").persistent(false).fetch_one(connection).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pgbouncer_flag_is_taken_out_and_everything_else_kept() {
        let cases = [
            ("postgres://u:p@h:6543/db?pgbouncer=true", "postgres://u:p@h:6543/db", true),
            ("postgres://u:p@h/db?sslmode=require&pgbouncer=true", "postgres://u:p@h/db?sslmode=require", true),
            ("postgres://u:p@h/db?PgBouncer=true&sslmode=require", "postgres://u:p@h/db?sslmode=require", true),
            ("postgres://u:p@h/db?sslmode=require", "postgres://u:p@h/db?sslmode=require", false),
            ("postgres://u:p@h/db", "postgres://u:p@h/db", false),
        ];
        for (url, kept, flagged) in cases {
            assert_eq!(strip_pgbouncer_flag(url), (kept.to_string(), flagged), "{url}");
        }
    }

    #[test]
    fn the_supabase_transaction_port_or_the_flag_name_a_transaction_pooler() {
        assert!(named_as_transaction_pooler(false, 6543));
        assert!(named_as_transaction_pooler(true, 5432));
        assert!(!named_as_transaction_pooler(false, 5432));
    }
}
