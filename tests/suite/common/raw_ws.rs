//! A WebSocket client over raw TCP that can break RFC 6455 on purpose: it writes frames byte by
//! byte (any FIN, RSV, opcode, length and payload, masked as a client must unless told not to)
//! and reads the server's frames as they come, so tests see exactly what went over the wire.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// Any key works: the server's accept value is not checked here.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame (1005 when it has no payload).
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "{self:?}");
        match self.payload.as_slice() {
            [] => (1005, String::new()),
            [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), String::from_utf8(reason.to_vec()).expect("a UTF-8 reason")),
            other => panic!("a close payload of {} byte", other.len()),
        }
    }
}

/// What the server sent before closing, and how it closed.
#[derive(Debug)]
pub struct RawClose {
    pub code: u16,
    pub reason: String,
    pub texts: Vec<Value>,
}

pub struct RawWs {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path` (with its query) and returns the socket once the 101 is read.
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut socket = RawWs { stream, buffer: Vec::new() };
        let head = socket.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        socket
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 4);
                return head;
            }
            assert!(self.fill().await > 0, "the connection ended inside the response head");
        }
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await.expect("the server answers in time").unwrap_or(0);
        self.buffer.extend_from_slice(&chunk[..n]);
        n
    }

    /// Writes one masked frame; `first` is the FIN/RSV/opcode byte as it goes on the wire.
    pub async fn send_raw(&mut self, first: u8, payload: &[u8]) {
        self.write_frame(first, payload, true).await;
    }

    /// Writes one masked frame from its parts.
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(if fin { 0x80 } else { 0 } | opcode, payload).await;
    }

    /// Writes a frame without a mask (RFC 6455 §5.1 forbids it from a client).
    pub async fn send_unmasked(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.write_frame(if fin { 0x80 } else { 0 } | opcode, payload, false).await;
    }

    async fn write_frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut frame = vec![first];
        match payload.len() {
            n @ 0..=125 => frame.push(mask_bit | n as u8),
            n @ 126..=0xffff => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&MASK);
            frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ MASK[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        // The server may already have closed (it reads ahead of what it answers): not an error here.
        let _ = self.stream.write_all(&frame).await;
    }

    /// The next server frame; `None` when the connection ended.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// The next text frame as JSON (skipping pings).
    pub async fn recv_json(&mut self) -> Value {
        loop {
            let frame = self.recv().await.expect("a frame before the end");
            match frame.opcode {
                TEXT => return serde_json::from_slice(&frame.payload).expect("server text frames are JSON"),
                PING => continue,
                _ => panic!("expected a text frame, got {frame:?}"),
            }
        }
    }

    /// Reads up to the server's close frame; panics if the connection ends without one.
    pub async fn recv_close(&mut self) -> RawClose {
        let mut texts = Vec::new();
        loop {
            let Some(frame) = self.recv().await else {
                panic!("the connection ended without a close frame; texts before: {texts:?}");
            };
            match frame.opcode {
                TEXT => texts.push(serde_json::from_slice(&frame.payload).expect("server text frames are JSON")),
                CLOSE => {
                    let (code, reason) = frame.close();
                    return RawClose { code, reason, texts };
                }
                _ => {}
            }
        }
    }

    /// True once the server has closed the TCP connection (reads reach the end).
    pub async fn ends(&mut self) -> bool {
        while self.recv().await.is_some() {}
        true
    }
}

/// An unmasked server frame at the start of `bytes`, with how many bytes it took.
fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let [first, second, rest @ ..] = bytes else { return None };
    assert_eq!(second & 0x80, 0, "server frames are never masked");
    let (len, header) = match second & 0x7f {
        126 => (u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = bytes.get(header..header + len)?.to_vec();
    Some((Frame { fin: first & 0x80 != 0, opcode: first & 0x0f, payload }, header + len))
}
