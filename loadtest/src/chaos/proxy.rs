//! A TCP proxy in front of each node (the sockets' way in; REST goes straight to the node), which
//! can cut single sockets: both sides of one connection are reset (linger 0, then dropped), with
//! whatever was in flight lost — a load balancer or a mobile network dropping one connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use pam_loadtest::reconnect::SplitMix64;

/// A proxy to one node; the connections through it can be cut one by one.
pub(super) struct Proxy {
    pub(super) url: String,
    live: Arc<Mutex<HashMap<u64, AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `127.0.0.1:{port}`.
    pub(super) async fn start(port: u16) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("proxy: {e}"))?;
        let url = format!("ws://{}", listener.local_addr().map_err(|e| e.to_string())?);
        let live: Arc<Mutex<HashMap<u64, AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let live = live.clone();
            async move {
                let mut next = 0u64;
                while let Ok((client, _)) = listener.accept().await {
                    next += 1;
                    let (n, live2) = (next, live.clone());
                    let task = tokio::spawn(async move {
                        // A node that is down: the client sees its connection end.
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await {
                            forward(client, server).await;
                        }
                        live2.lock().unwrap_or_else(|e| e.into_inner()).remove(&n);
                    });
                    live.lock().unwrap_or_else(|e| e.into_inner()).insert(n, task.abort_handle());
                }
            }
        });
        Ok(Proxy { url, live, accept })
    }

    /// Resets one connection picked at random; whether there was one.
    pub(super) fn cut_one(&self, rng: &mut SplitMix64) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.is_empty() {
            return false;
        }
        let pick = (rng.next_u64() % live.len() as u64) as usize;
        live.values().nth(pick).map(AbortHandle::abort).is_some()
    }

    pub(super) fn connections(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for handle in self.live.lock().unwrap_or_else(|e| e.into_inner()).values() {
            handle.abort();
        }
    }
}

/// Copies both ways until either side ends. Both streams have linger 0, so when this future is
/// dropped (aborted: a cut) each side gets an RST.
async fn forward(mut client: TcpStream, mut server: TcpStream) {
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
