//! Waiting for something to become true, with a deadline: a test never sleeps "a moment" and
//! hopes; it polls the condition and, when the deadline passes, fails saying what it waited for
//! (and the last thing it saw, where the check reports it).

use std::time::Duration;

use super::WAIT;

/// Between two checks, unless the caller paces them itself (checks that send chats must not run
/// into the rate limit).
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it holds or `WAIT` passes.
pub async fn wait_until(what: &str, check: impl AsyncFnMut() -> bool) {
    wait_until_within(WAIT, what, check).await;
}

/// Like `wait_until`, for a wait whose time is longer than one expectation's `WAIT` (a batch of
/// work that grows with its size, a TTL to expire, a server to come back): fails after `limit`.
pub async fn wait_until_within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    poll_until(limit, POLL, what, async || if check().await { Ok(()) } else { Err(String::new()) }).await;
}

/// Like `poll`, failing the test when `limit` passes: names `what` and the last `Err` the check
/// returned (what was seen instead).
pub async fn poll_until<T>(limit: Duration, every: Duration, what: &str, check: impl AsyncFnMut() -> Result<T, String>) -> T {
    match poll(limit, every, check).await {
        Ok(value) => value,
        Err(last) if last.is_empty() => panic!("timed out after {limit:?} waiting until {what}"),
        Err(last) => panic!("timed out after {limit:?} waiting until {what}; last seen: {last}"),
    }
}

/// The one polling loop: runs `check` every `every` until it returns `Ok` (whose value it
/// returns) or `limit` passes (then the last `Err`). A check may panic itself when waiting on
/// makes no sense (a process exited).
pub async fn poll<T>(limit: Duration, every: Duration, mut check: impl AsyncFnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if tokio::time::Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
