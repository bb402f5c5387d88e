//! `push-soak`'s steady traffic while the sockets run: `POST /api/v1/pam/push` alerts (admin
//! bearer) and `POST /api/v1/pam/timers` timers (the user's own bearer, due 1–5 s later) to random
//! users through a random node, each at its own offered rate, and every `--expense-every-secs`
//! one bulk INSERT of `--expense-rows` expenses straight into Postgres that takes some budgets past
//! their thresholds. Each alert's `content.message` is `soak {k} {µs}`, its send time on the
//! runner's clock; every accepted id is kept for the audit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;
use sqlx::postgres::PgPool;
use tokio::sync::Semaphore;

use pam_loadtest::clock::now_micros;
use pam_loadtest::progress::Progress;
use pam_loadtest::reconnect::SplitMix64;
use pam_loadtest::summary::Trend;

use super::budgets::BudgetBook;
use super::db;
use crate::cluster::due;

/// The offered push traffic.
pub(super) struct Offer {
    pub(super) alert_rate: f64,
    pub(super) timer_rate: f64,
    /// Alerts are offered this long …
    pub(super) length: Duration,
    /// … timers only this long (so each fires before the end).
    pub(super) timers_for: Duration,
    pub(super) in_flight: usize,
}

/// What the push and timer routes answered.
#[derive(Default)]
pub(super) struct Sent {
    /// Alert id → (user, send stamp in µs, node it was posted to).
    pub(super) alerts: HashMap<String, (String, u64, usize)>,
    pub(super) alerts_offered: u64,
    pub(super) alerts_refused: u64,
    /// Timer id → user.
    pub(super) timers: HashMap<String, String>,
    pub(super) timers_offered: u64,
    pub(super) timers_refused: u64,
    pub(super) first_error: Option<String>,
    pub(super) elapsed: Duration,
}

enum Answer {
    Alert(String, String, u64, usize),
    Timer(String, String),
}

/// Offers alerts and timers at their rates to random `users` (with their `tokens`) via random nodes.
pub(super) async fn offer(
    bases: &[String; 2],
    admin: &str,
    users: &[String],
    tokens: &[String],
    offer: &Offer,
    seed: u64,
    progress: &Progress,
) -> Sent {
    let http = pam_loadtest::target::http_client();
    let gate = Arc::new(Semaphore::new(offer.in_flight.max(1)));
    let mut rng = SplitMix64::new(seed);
    let mut sent = Sent::default();
    let mut tasks = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < offer.length {
        tick.tick().await;
        let elapsed = started.elapsed();
        let timers_due = if elapsed < offer.timers_for { due(elapsed, offer.timer_rate, sent.timers_offered) } else { 0 };
        let work = (0..due(elapsed, offer.alert_rate, sent.alerts_offered)).map(|_| true).chain((0..timers_due).map(|_| false));
        for alert in work.collect::<Vec<_>>() {
            let Ok(permit) = gate.clone().acquire_owned().await else { break };
            let n = (rng.next_u64() % users.len() as u64) as usize;
            let node = (rng.next_u64() % 2) as usize;
            let base = &bases[node];
            let user = users[n].clone();
            Progress::bump(&progress.sent);
            let request: BoxFuture<'static, Result<Answer, String>> = if alert {
                let k = sent.alerts_offered;
                sent.alerts_offered += 1;
                let stamp = now_micros();
                let body = json!({"user_id": user, "type": "proactive_alert", "ttl_s": 3600,
                                  "content": {"message": format!("soak {k} {stamp}"), "alert_type": "soak", "priority": "normal"}});
                let post = http.post(format!("{base}/api/v1/pam/push")).bearer_auth(admin).json(&body).send();
                Box::pin(async move {
                    let id = answer_id(post.await, 202, "id", "POST /api/v1/pam/push").await?;
                    Ok(Answer::Alert(id, user, stamp, node))
                })
            } else {
                let k = sent.timers_offered;
                sent.timers_offered += 1;
                let body = json!({"label": format!("soak {k}"), "timer_type": "timer", "duration_s": 1 + rng.next_u64() % 5,
                                  "message": format!("soak timer {k}")});
                let post = http.post(format!("{base}/api/v1/pam/timers")).bearer_auth(&tokens[n]).json(&body).send();
                Box::pin(async move {
                    let id = answer_id(post.await, 201, "timer_id", "POST /api/v1/pam/timers").await?;
                    Ok(Answer::Timer(id, user))
                })
            };
            tasks.spawn(async move {
                let answer = request.await;
                drop(permit);
                (alert, answer)
            });
        }
        while let Some(done) = tasks.try_join_next() {
            book(&mut sent, done);
        }
    }
    sent.elapsed = started.elapsed();
    while let Some(done) = tasks.join_next().await {
        book(&mut sent, done);
    }
    sent
}

type Done = Result<(bool, Result<Answer, String>), tokio::task::JoinError>;

fn book(sent: &mut Sent, done: Done) {
    let (alert, answer) = match done {
        Ok(done) => done,
        Err(error) => (true, Err(error.to_string())),
    };
    match answer {
        Ok(Answer::Alert(id, user, stamp, node)) => {
            sent.alerts.insert(id, (user, stamp, node));
        }
        Ok(Answer::Timer(id, user)) => {
            sent.timers.insert(id, user);
        }
        Err(error) => {
            if alert {
                sent.alerts_refused += 1;
            } else {
                sent.timers_refused += 1;
            }
            sent.first_error.get_or_insert(error);
        }
    }
}

/// The id field of a JSON answer with the expected status.
async fn answer_id(response: reqwest::Result<reqwest::Response>, status: u16, field: &str, route: &str) -> Result<String, String> {
    let response = response.map_err(|e| format!("{route}: {e}"))?;
    let got = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if got != status {
        return Err(format!("{route}: {got} {text}"));
    }
    let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{route}: {e}"))?;
    body[field].as_str().map(str::to_string).ok_or_else(|| format!("{route}: no {field} in {text}"))
}

/// What the bulk inserts did.
#[derive(Default)]
pub(super) struct Inserted {
    pub(super) statements: u64,
    pub(super) rows: u64,
    pub(super) failed: u64,
    pub(super) first_error: Option<String>,
    /// Time per statement.
    pub(super) took: Trend,
}

/// One bulk insert of about `rows` expenses every `every`, for `length`; the book learns what
/// each committed statement spent.
pub(super) async fn expenses(
    pool: &PgPool,
    book: &mut BudgetBook,
    others: &[String],
    rows: usize,
    every: Duration,
    length: Duration,
    seed: u64,
) -> Inserted {
    let mut rng = SplitMix64::new(seed);
    let mut inserted = Inserted::default();
    if book.budgets.is_empty() || rows == 0 {
        return inserted;
    }
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if started.elapsed() >= length {
            return inserted;
        }
        let batch = book.bulk(rows, others, &mut rng);
        let before = std::time::Instant::now();
        match db::insert_expenses(pool, &batch).await {
            Ok(()) => {
                inserted.took.record(before.elapsed());
                book.committed(&batch, now_micros());
                inserted.statements += 1;
                inserted.rows += batch.len() as u64;
            }
            Err(error) => {
                inserted.failed += 1;
                inserted.first_error.get_or_insert(error);
            }
        }
    }
}
