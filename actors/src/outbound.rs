//! The bounded outbound queue between a connection actor and its writer task, plus an
//! out-of-band close signal that still gets through when the queue is full (slow consumer).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pam_protocol::{CloseCode, ServerFrame};
use tokio::sync::{Notify, mpsc};

/// A frame for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    Text(String),
    /// An RFC 6455 ping.
    Ping,
}

/// How the writer ends the socket: an optional JSON `error` frame, then a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub error_frame: Option<String>,
    pub code: u16,
    pub reason: String,
}

impl CloseRequest {
    /// A close straight from the protocol table: the code's `error` frame (where it has one) with
    /// `detail` as its message, and the same text, cut to fit, as the close reason.
    pub fn from_table(code: CloseCode, detail: &str) -> Self {
        let reason = code.reason_with(detail);
        let error_frame = code.error_code().map(|error_code| ServerFrame::error(error_code, reason.clone()).to_text());
        CloseRequest { error_frame, code: code.code(), reason }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The queue is full: the client is not reading.
    Full,
    /// The writer is gone or closing.
    Closed,
}

#[derive(Debug, Default)]
struct Shared {
    closing: AtomicBool,
    request: Mutex<Option<CloseRequest>>,
    notify: Notify,
}

/// The actor's side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<OutFrame>,
    shared: Arc<Shared>,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutboundReceiver {
    rx: mpsc::Receiver<OutFrame>,
    shared: Arc<Shared>,
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum WriterEvent {
    Frame(OutFrame),
    Close(CloseRequest),
    /// Every sender is gone without a close request.
    Ended,
}

/// A queue of `capacity` frames.
pub fn channel(capacity: usize) -> (Outbound, OutboundReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared::default());
    (Outbound { tx, shared: shared.clone() }, OutboundReceiver { rx, shared })
}

impl Outbound {
    /// Queues a frame without waiting.
    pub fn send(&self, frame: OutFrame) -> Result<(), SendError> {
        if self.is_closing() {
            return Err(SendError::Closed);
        }
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Asks the writer to close; the first request wins. Returns whether this one won.
    pub fn close(&self, request: CloseRequest) -> bool {
        if self.shared.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.shared.request.lock().unwrap_or_else(|p| p.into_inner()) = Some(request);
        self.shared.notify.notify_one();
        true
    }

    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }
}

impl OutboundReceiver {
    /// Waits for the next frame or the close request, whichever comes first.
    pub async fn next(&mut self) -> WriterEvent {
        tokio::select! {
            biased;
            () = self.shared.notify.notified() => self.take_close(),
            frame = self.rx.recv() => match frame {
                Some(frame) => WriterEvent::Frame(frame),
                None => match self.shared.request.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(request) => WriterEvent::Close(request),
                    None => WriterEvent::Ended,
                },
            },
        }
    }

    /// Resolves once a close is requested (for a writer blocked on a slow peer).
    pub async fn wait_close(&mut self) -> CloseRequest {
        loop {
            self.shared.notify.notified().await;
            if let WriterEvent::Close(request) = self.take_close() {
                return request;
            }
        }
    }

    /// A frame already queued, for flushing before a close.
    pub fn try_next_frame(&mut self) -> Option<OutFrame> {
        self.rx.try_recv().ok()
    }

    fn take_close(&mut self) -> WriterEvent {
        match self.shared.request.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(request) => WriterEvent::Close(request),
            None => WriterEvent::Ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(code: u16) -> CloseRequest {
        CloseRequest { error_frame: None, code, reason: "r".into() }
    }

    #[tokio::test]
    async fn a_full_queue_reports_full_and_close_still_gets_through() {
        let (out, mut rx) = channel(2);
        out.send(OutFrame::Ping).unwrap();
        out.send(OutFrame::Ping).unwrap();
        assert_eq!(out.send(OutFrame::Ping), Err(SendError::Full));
        assert!(out.close(close(4408)));
        assert!(!out.close(close(1000)), "first close wins");
        assert_eq!(rx.next().await, WriterEvent::Close(close(4408)));
        assert_eq!(rx.try_next_frame(), Some(OutFrame::Ping));
        assert_eq!(out.send(OutFrame::Ping), Err(SendError::Closed));
    }

    #[test]
    fn table_closes_carry_the_codes_error_frame_except_normal() {
        let close = CloseRequest::from_table(CloseCode::InternalError, "internal error: boom");
        assert_eq!(close.code, 1011);
        assert_eq!(close.reason, "internal error: boom");
        assert_eq!(close.error_frame.as_deref(), Some(r#"{"type":"error","error_code":"INTERNAL","message":"internal error: boom"}"#));
        assert_eq!(CloseRequest::from_table(CloseCode::Normal, "").error_frame, None);
    }

    #[tokio::test]
    async fn dropping_every_sender_ends_the_writer() {
        let (out, mut rx) = channel(2);
        out.send(OutFrame::Text("a".into())).unwrap();
        drop(out);
        assert_eq!(rx.next().await, WriterEvent::Frame(OutFrame::Text("a".into())));
        assert_eq!(rx.next().await, WriterEvent::Ended);
    }
}
