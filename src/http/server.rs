//! The accept loop: one task per TCP connection serving the router over hyper's HTTP/1 with
//! upgrades, optional TLS, and a header-read deadline that also bounds the TLS handshake, so a
//! half-open or silent client costs a socket for `PAM_HEADER_READ_TIMEOUT_MS` at most, and a
//! request head is capped at `PAM_MAX_HEADER_BYTES`: hyper answers a longer one, complete or
//! half-sent, with 431 as soon as that much is buffered and closes the connection.
//!
//! After a WebSocket upgrade the connection task ends and frees hyper's buffers; the upgraded
//! socket lives on in the WebSocket tasks (src/http/ws.rs), which the drain closes with 1012.
//! The listener itself is closed as soon as the drain starts, so a new process can bind the port
//! while this one finishes its connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::http::tls::TlsFiles;

/// Pause after an accept error such as EMFILE, so a full fd table does not spin the loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// How connections are served.
#[derive(Clone)]
pub struct ServeOptions {
    /// Deadline for the TLS handshake and for each request head.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (at least 8192); also the cap of each connection's read
    /// buffer, so no connection holds more than this before its head is complete.
    pub max_header_bytes: usize,
    /// Serve TLS with these files; `None` = plain HTTP (a proxy in front terminates TLS).
    pub tls: Option<TlsFiles>,
}

/// What every connection task shares.
struct Shared {
    router: Router,
    http: http1::Builder,
    options: ServeOptions,
}

/// Accepts until `release` resolves, then closes the listener at once (the port is free for a new
/// process while this one drains) and keeps serving the connections it has; when `stop` resolves
/// (after `release`), asks open HTTP connections to finish their current request and returns
/// once every connection task has ended.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    release: impl Future<Output = ()>,
    stop: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_header_size(options.max_header_bytes)
        .max_buf_size(options.max_header_bytes.max(crate::settings::MIN_HEADER_BYTES));
    let shared = Arc::new(Shared { router, http, options });
    let (stopping, stop_seen) = watch::channel(false);
    tokio::pin!(release);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut release => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, peer, shared.clone(), stop_seen.clone()));
    }
    // Connections the kernel completed but nobody accepted are reset: their clients retry
    // elsewhere (or on the process that binds the port next).
    drop(listener);
    tracing::info!("listener closed: no new connections; open ones are drained");
    stop.await;
    drop(stop_seen);
    let _ = stopping.send(true);
    // Resolves when every connection task has dropped its receiver.
    stopping.closed().await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    match &shared.options.tls {
        None => serve_http(TokioIo::new(stream), peer, &shared, stop).await,
        Some(tls) => match tokio::time::timeout(shared.options.header_read_timeout, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => serve_http(TokioIo::new(stream), peer, &shared, stop).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn serve_http<I>(io: I, peer: SocketAddr, shared: &Shared, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = PeerService { router: shared.router.clone(), peer };
    let connection = shared.http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // The only value ever sent is `true`; a dropped sender means stopping too.
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Header timeouts, resets and malformed requests: the client's problem, not ours.
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
}

/// The router with the peer address in the request extensions (what `ConnectInfo` reads).
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        tower_service::Service::call(&mut self.router.clone(), request)
    }
}
