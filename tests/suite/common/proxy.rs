//! A TCP proxy in front of a gateway that fails the rude ways a mobile network does: it can go
//! silent (stop forwarding both ways without closing anything — a phone that left coverage, no
//! FIN) or reset every connection through it (RST, with whatever was in flight lost).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct FlakyProxy {
    /// Where clients connect instead of the gateway.
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (silent, connections) = (silent.clone(), connections.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(target).await else { continue };
                    // Closing with linger 0 sends RST: `reset` drops the streams mid-flight.
                    let _ = client.set_zero_linger();
                    let _ = server.set_zero_linger();
                    let silent = silent.clone();
                    connections.lock().unwrap().spawn(forward(client, server, silent));
                }
            }
        });
        FlakyProxy { addr, silent, connections, accept }
    }

    /// A `ws://` URL of `path` through the proxy.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// From now on nothing is forwarded either way, and nothing is closed.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Connections made from now on are forwarded again (the silent ones stay silent until reset).
    pub fn forward_again(&self) {
        self.silent.store(false, Ordering::SeqCst);
    }

    /// Resets every connection through the proxy (both sides get RST; bytes in flight are lost).
    pub fn reset(&self) {
        self.connections.lock().unwrap().abort_all();
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

/// Copies both ways until either side ends; once `silent`, reads nothing more and drops what it
/// had read.
async fn forward(client: TcpStream, server: TcpStream, silent: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = pump(&mut client_read, &mut server_write, &silent);
    let down = pump(&mut server_read, &mut client_write, &silent);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    // Both halves of each stream drop here together with linger 0, so an ended side resets the
    // other rather than leaving it half open.
}

async fn pump(from: &mut (impl AsyncReadExt + Unpin), to: &mut (impl AsyncWriteExt + Unpin), silent: &AtomicBool) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if silent.load(Ordering::SeqCst) {
            return std::future::pending().await;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if silent.load(Ordering::SeqCst) {
            return std::future::pending().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
