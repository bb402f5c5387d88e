//! The gateway's log lines captured in-process, for tests that check what is (or is never)
//! logged: a `tracing` subscriber writing into a buffer the test reads.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything the subscriber wrote, as raw bytes (text without ANSI colours).
pub type LogBuffer = Arc<Mutex<Vec<u8>>>;

/// A subscriber of the lines at `level` and above, and the buffer they go to. The test installs
/// it (for its thread, or for the process).
pub fn capturing_subscriber(level: tracing::Level) -> (impl tracing::Subscriber + Send + Sync + 'static, LogBuffer) {
    let buffer = LogBuffer::default();
    let writer = {
        let buffer = buffer.clone();
        move || Capture(buffer.clone())
    };
    (tracing_subscriber::fmt().with_max_level(level).with_writer(writer).with_ansi(false).finish(), buffer)
}

struct Capture(LogBuffer);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
