//! The one clock the runner stamps with: microseconds on a process-wide monotonic epoch, so a
//! stamp taken before a send and a time read at the receive (in this process) subtract directly.

use std::sync::OnceLock;
use std::time::Instant;

/// Microseconds since this process first asked; the clock every stamp and every receive uses.
pub fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}
