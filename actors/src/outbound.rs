//! The bounded outbound queue between a connection actor and its writer task, plus an
//! out-of-band close signal that still gets through when the queue is full (slow consumer).
//! A leaf: imports only the protocol's close table.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pam_protocol::{CloseCode, ServerFrame};
use tokio::sync::Notify;

/// A frame for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    /// A text frame, as sent.
    Text(String),
    /// An RFC 6455 ping whose payload is this token in decimal (its Pong echoes it: proof of
    /// receipt for what was queued before it).
    Ping(u64),
}

/// How the writer ends the socket: an optional JSON `error` frame, then a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The JSON `error` frame sent before the close, if any.
    pub error_frame: Option<String>,
    /// The close code.
    pub code: u16,
    /// The close reason (≤ 123 bytes).
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

// A plain deque behind a mutex instead of a tokio mpsc: tokio allocates a 32-slot block per
// channel up front (~0.8 KiB per idle socket); an empty `VecDeque` allocates nothing.
#[derive(Debug)]
struct Shared {
    capacity: usize,
    queue: Mutex<VecDeque<OutFrame>>,
    closing: AtomicBool,
    request: Mutex<Option<CloseRequest>>,
    /// Live `Outbound` clones; the writer ends when this reaches 0.
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
    /// Wakes the writer: a frame, a close request or the last sender gone.
    notify: Notify,
    /// Wakes senders waiting for room (a paced resume replay).
    room: Notify,
}

/// The actor's side: cheap to clone, never blocks.
#[derive(Debug)]
pub struct Outbound {
    shared: Arc<Shared>,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutboundReceiver {
    shared: Arc<Shared>,
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum WriterEvent {
    /// Send this frame.
    Frame(OutFrame),
    /// Send the error frame (if any) and close.
    Close(CloseRequest),
    /// Every sender is gone without a close request.
    Ended,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<OutFrame>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_request(&self) -> Option<CloseRequest> {
        self.request.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Clone for Outbound {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Outbound { shared: self.shared.clone() }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.notify.notify_one();
        }
    }
}

impl Outbound {
    /// A queue of `capacity` frames: the actor's side and the writer's.
    pub fn channel(capacity: usize) -> (Outbound, OutboundReceiver) {
        let shared = Arc::new(Shared {
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            closing: AtomicBool::new(false),
            request: Mutex::new(None),
            senders: AtomicUsize::new(1),
            receiver_alive: AtomicBool::new(true),
            notify: Notify::new(),
            room: Notify::new(),
        });
        (Outbound { shared: shared.clone() }, OutboundReceiver { shared })
    }

    /// Queues a frame without waiting.
    pub fn send(&self, frame: OutFrame) -> Result<(), SendError> {
        if self.is_closing() || !self.shared.receiver_alive.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let mut queue = self.shared.queue();
        if queue.len() >= self.shared.capacity {
            return Err(SendError::Full);
        }
        queue.push_back(frame);
        drop(queue);
        self.shared.notify.notify_one();
        Ok(())
    }

    /// Queues a frame, waiting while the queue is full (for a resume replay, which must neither
    /// overflow a small queue nor skip a frame). Fails only when the socket is closing or gone.
    pub async fn send_when_room(&self, frame: OutFrame) -> Result<(), SendError> {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before the attempt, so a frame taken in between still wakes us.
            room.as_mut().enable();
            match self.send(frame.clone()) {
                Err(SendError::Full) => room.await,
                other => return other,
            }
        }
    }

    /// Asks the writer to close; the first request wins. Returns whether this one won.
    pub fn close(&self, request: CloseRequest) -> bool {
        if self.shared.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.shared.request.lock().unwrap_or_else(|p| p.into_inner()) = Some(request);
        self.shared.notify.notify_one();
        // Senders waiting for room stop now: the socket is closing.
        self.shared.room.notify_waiters();
        true
    }

    /// Whether a close was requested (nothing more is queued then).
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }
}

impl OutboundReceiver {
    /// Waits for the next frame or the close request; a close request goes first.
    pub async fn next(&mut self) -> WriterEvent {
        loop {
            if self.shared.closing.load(Ordering::Acquire) {
                if let Some(request) = self.shared.take_request() {
                    return WriterEvent::Close(request);
                }
            }
            if let Some(frame) = self.try_next_frame() {
                return WriterEvent::Frame(frame);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return self.shared.take_request().map_or(WriterEvent::Ended, WriterEvent::Close);
            }
            // A wake-up between the checks and here is kept as Notify's permit.
            self.shared.notify.notified().await;
        }
    }

    /// Resolves once a close is requested (for a writer blocked on a slow peer).
    pub async fn wait_close(&mut self) -> CloseRequest {
        loop {
            if self.shared.closing.load(Ordering::Acquire) {
                if let Some(request) = self.shared.take_request() {
                    return request;
                }
            }
            self.shared.notify.notified().await;
        }
    }

    /// A frame already queued, for flushing before a close.
    pub fn try_next_frame(&mut self) -> Option<OutFrame> {
        let frame = self.shared.queue().pop_front();
        if frame.is_some() {
            self.shared.room.notify_waiters();
        }
        frame
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Release);
        // A writer gone with a full queue must not leave a paced replay waiting forever.
        self.shared.room.notify_waiters();
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
        let (out, mut rx) = Outbound::channel(2);
        out.send(OutFrame::Ping(0)).unwrap();
        out.send(OutFrame::Ping(0)).unwrap();
        assert_eq!(out.send(OutFrame::Ping(0)), Err(SendError::Full));
        assert!(out.close(close(4408)));
        assert!(!out.close(close(1000)), "first close wins");
        assert_eq!(rx.next().await, WriterEvent::Close(close(4408)));
        assert_eq!(rx.try_next_frame(), Some(OutFrame::Ping(0)));
        assert_eq!(out.send(OutFrame::Ping(0)), Err(SendError::Closed));
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
    async fn a_dropped_writer_makes_sends_fail_as_closed() {
        let (out, rx) = Outbound::channel(2);
        drop(rx);
        assert_eq!(out.send(OutFrame::Ping(0)), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_a_frame_and_for_the_last_sender_leaving() {
        let (out, mut rx) = Outbound::channel(2);
        let second = out.clone();
        let writer = tokio::spawn(async move { (rx.next().await, rx.next().await) });
        tokio::task::yield_now().await;
        second.send(OutFrame::Text("late".into())).unwrap();
        drop(second);
        drop(out);
        assert_eq!(writer.await.unwrap(), (WriterEvent::Frame(OutFrame::Text("late".into())), WriterEvent::Ended));
    }

    #[tokio::test]
    async fn send_when_room_waits_for_the_writer_instead_of_failing() {
        let (out, mut rx) = Outbound::channel(1);
        let sender = tokio::spawn(async move {
            for n in 0..5 {
                out.send_when_room(OutFrame::Text(n.to_string())).await.unwrap();
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 5 {
            if let WriterEvent::Frame(OutFrame::Text(text)) = rx.next().await {
                seen.push(text);
            }
        }
        sender.await.unwrap();
        assert_eq!(seen, ["0", "1", "2", "3", "4"]);
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_stops_when_the_writer_goes_away() {
        let (out, rx) = Outbound::channel(1);
        out.send(OutFrame::Ping(0)).unwrap();
        let waiting = tokio::spawn(async move { out.send_when_room(OutFrame::Ping(0)).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn dropping_every_sender_ends_the_writer() {
        let (out, mut rx) = Outbound::channel(2);
        out.send(OutFrame::Text("a".into())).unwrap();
        drop(out);
        assert_eq!(rx.next().await, WriterEvent::Frame(OutFrame::Text("a".into())));
        assert_eq!(rx.next().await, WriterEvent::Ended);
    }
}
