//! The live progress line: shared counters that every virtual user bumps, printed to stderr once a
//! second while a scenario runs (k6's `running (…)` line).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters shown on the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Progress {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn line(&self, label: &str, elapsed: Duration) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "running ({:>5.1}s) {label}: connected={} failed={} sent={} received={}",
            elapsed.as_secs_f64(),
            get(&self.connected),
            get(&self.failed),
            get(&self.sent),
            get(&self.received)
        )
    }
}

/// Prints the progress line every second until dropped.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    pub fn start(label: &str, progress: Arc<Progress>) -> Self {
        let label = label.to_string();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("{}", progress.line(&label, started.elapsed()));
            }
        });
        Self { task }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_every_counter() {
        let progress = Progress::default();
        Progress::bump(&progress.connected);
        Progress::bump(&progress.sent);
        Progress::bump(&progress.sent);
        let line = progress.line("legacy-chat", Duration::from_millis(2500));
        assert_eq!(line, "running (  2.5s) legacy-chat: connected=1 failed=0 sent=2 received=0");
    }
}
