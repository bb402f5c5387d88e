//! `Application`: builds everything from `Settings`, binds the listener (port 0 allowed) and
//! runs until a shutdown future resolves, then releases the listener and drains sockets with
//! 1012 within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use pam_actors::TurnOutbox;
use pam_actors::{AuthFailureThrottle, Authenticator, ConnectionDeps, ConnectionSupervisor, ConversationStore, LlmProvider, SupervisorMsg};
use ractor::Actor;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;

use crate::auth::JwtAuthenticator;
use crate::auth::dev::DevAuth;
use crate::auth::jwks::JwksCache;
use crate::context::redis_cache::RedisCache;
use crate::http::server::ServeOptions;
use crate::http::tls::TlsFiles;
use crate::http::{AppState, SharedState, router};
use crate::observability::telemetry::metrics_handle;
use crate::redis_target::RedisTarget;
use crate::settings::Settings;
use crate::storage::database::Database;

/// Writes kept in memory while the database is down (about 10 MB at most); beyond, they wait in
/// the journal only.
const TURN_OUTBOX_CAPACITY: usize = 10_000;
/// The outbox's last flush at shutdown gets at least this long, even when the grace is spent.
const MIN_FINAL_FLUSH: Duration = Duration::from_millis(500);
/// Pending TCP connections the kernel may queue (a connect storm must not hit SYN retries).
const LISTEN_BACKLOG: u32 = 4096;

/// Replacements for ports, for tests that need a misbehaving part.
#[derive(Default, Clone)]
pub struct Overrides {
    pub authenticator: Option<Arc<dyn Authenticator>>,
    pub llm: Option<Arc<dyn LlmProvider>>,
    pub loaders: Option<pam_actors::ContextLoaders>,
    /// The shared chat rate limit (what Redis answers with `REDIS_URL`), e.g. a slow one.
    pub shared_rate_limit: Option<Arc<dyn pam_actors::SharedRateLimit>>,
    /// The resume registry's limits (default [`pam_actors::ResumeLimits::default`]), e.g. a small total.
    pub resume_limits: Option<pam_actors::ResumeLimits>,
}

/// A built, bound gateway.
pub struct Application {
    listener: TcpListener,
    state: SharedState,
    tls: Option<TlsFiles>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let auth_settings = settings.validate()?;
        rustls::crypto::ring::default_provider().install_default().ok();
        let tls = settings.tls_paths().map(|(cert, key)| TlsFiles::load(cert, key)).transpose()?;
        // Bound first: a port in use is said before migrations and seeding run.
        let listener = bind(settings.listen)?;
        let address = listener.local_addr().context("the bound listener has no address")?;
        let metrics = metrics_handle();
        let opened = Database::open(&settings.database_url, settings.database_direct_url.as_deref(), settings.migrate).await?;
        let db = opened.db;
        let http = reqwest::Client::builder().build().context("could not build the HTTP client")?;
        let dev = match auth_settings.dev_auth {
            true => {
                let key_file = crate::auth::dev::key_file_for(&settings.database_url);
                Some(Arc::new(DevAuth::open(&auth_settings.audience, auth_settings.issuer.as_deref(), key_file.as_deref())?))
            }
            false => None,
        };
        let jwks = auth_settings.jwks_url.clone().map(|url| Arc::new(JwksCache::new(url, http.clone())));
        let jwks_warmup = jwks.clone().map(JwksCache::spawn_warmup);
        if auth_settings.hs256_secret.is_none() && jwks.is_none() {
            // Only reachable with dev auth on (validate refuses otherwise): the default start.
            tracing::info!(
                "dev auth: no SUPABASE_JWT_SECRET, SUPABASE_URL or PAM_JWKS_URL is set, so only tokens from POST /dev/token are accepted"
            );
        }
        let authenticator: Arc<dyn Authenticator> = match overrides.authenticator {
            Some(authenticator) => authenticator,
            None => Arc::new(JwtAuthenticator::new(&auth_settings, dev.as_ref().map(|d| d.secret()), jwks)),
        };
        let llm: Arc<dyn LlmProvider> = match overrides.llm {
            Some(llm) => llm,
            None => {
                let timers = crate::push::timers::tools::TimerTools::new(Arc::new(db.clone()));
                crate::models::build(&settings, Some(timers))?
            }
        };
        if dev.is_some() {
            seed_demo(&db).await;
        }
        let redis_target = settings.redis_url.as_deref().map(|url| RedisTarget::new(url, settings.redis_ca_file.as_deref())).transpose()?;
        let redis = match (settings.redis_url.as_deref(), &redis_target) {
            (Some(url), Some(target)) => {
                let ttls = [settings.profile_ttl_s, settings.financial_ttl_s, settings.social_ttl_s];
                let cache = Arc::new(RedisCache::connect_to(target, &settings.cache_prefix, ttls)?);
                let shown = crate::settings::secret::redact_url(url);
                match cache.probe().await {
                    // Optional dependency: start anyway, but say so once and loudly (health shows it too).
                    Err(error) => tracing::error!(
                        %error,
                        "REDIS_URL is unreachable at startup ({shown}): starting anyway; until Redis answers, context comes from the database and the in-process cache, and the per-user cap, rate limit, idempotency, pushes and v2 streams are this node's alone; /api/v1/pam/health shows cache status `unreachable`"
                    ),
                    Ok(()) => tracing::info!(
                        "REDIS_URL answers ({shown}): context cache, per-user cap, rate limit, idempotency, pushes and v2 streams are shared across nodes"
                    ),
                }
                Some(cache)
            }
            _ => {
                tracing::info!(
                    "REDIS_URL is not set: context is cached in process only, and the per-user cap, rate limit, idempotency and pushes are this node's alone"
                );
                None
            }
        };
        let loaders = match overrides.loaders {
            Some(loaders) => loaders,
            None => crate::context::spawn_loaders(&db, &settings, redis.clone().map(|r| r as Arc<dyn pam_actors::ContextCache>)).await?,
        };
        let loaders_for_listener = loaders.clone();
        let store: Arc<dyn ConversationStore> = Arc::new(db.clone());
        let outbox = Arc::new(open_outbox(&settings.outbox_journal)?);
        let flusher = crate::storage::outbox_flusher::spawn(store.clone(), outbox.clone());
        let node: Arc<str> = settings.node_id().into();
        tracing::info!(node = &*node, "node identity");
        metrics::gauge!(crate::cluster::NODE_UP, "node" => node.to_string()).set(1.0);
        let resume_limits = overrides.resume_limits.unwrap_or_default();
        let stored_pushes = pam_actors::StoredPushDelivery::spawn(Arc::new(db.clone()));
        let mut cluster =
            crate::cluster::wiring::build(&settings, redis_target.as_ref(), node.clone(), address, resume_limits, stored_pushes.clone())?;
        if let Some(shared) = overrides.shared_rate_limit {
            cluster.rate_limiter = pam_actors::ChatRateLimit::new(settings.rate_limit_per_minute, Some(shared));
        }
        let deps = Arc::new(ConnectionDeps {
            settings: settings.connection_settings(),
            authenticator,
            llm,
            store,
            outbox,
            loaders,
            rate_limiter: cluster.rate_limiter,
            user_slots: cluster.view.slots.clone(),
            push_bus: cluster.view.push.clone(),
            notifications: Arc::new(db.clone()),
            stored_pushes,
            auth_throttle: AuthFailureThrottle::new(settings.auth_failures_per_minute, Duration::from_secs(60)),
            resume: cluster.resume,
            running: pam_actors::RunningTurns::new(),
            liveness: cluster.view.redis.clone().map(|redis| redis as Arc<dyn pam_actors::NodeLiveness>),
            node,
        });
        let scheduler = crate::push::timers::scheduler::spawn(deps.notifications.clone(), deps.push_bus.clone());
        // Budget alerts: triggers queue every change in a table the watcher drains; on Postgres the
        // change notifications wake it early, so its steady poll can be slower.
        let poll_budgets = match db {
            Database::Postgres(_) => crate::push::budget_alerts::watcher::POLL_WITH_NOTIFICATIONS,
            Database::Sqlite(_) => crate::push::budget_alerts::watcher::POLL_WITHOUT_NOTIFICATIONS,
        };
        let (budgets, budget_watcher) =
            crate::push::budget_alerts::watcher::BudgetWatcher::spawn(Arc::new(db.clone()), deps.push_bus.clone(), poll_budgets);
        let invalidation =
            opened.session.map(|session| crate::context::invalidation::spawn_listener(session, loaders_for_listener, budgets));
        let (supervisor, _) = Actor::spawn(None, ConnectionSupervisor, ()).await.context("could not start the connection supervisor")?;
        let allowed_origins = settings.allowed_origins_list();
        let trusted_proxies = crate::http::client_ip::TrustedProxies::parse(settings.trusted_proxies.as_deref())?;
        let settings_csrf_secret = settings.csrf_secret.clone();
        let state = Arc::new(AppState {
            settings,
            supervisor,
            deps,
            db,
            dev,
            metrics,
            draining: AtomicBool::new(false),
            live_sockets: AtomicUsize::new(0),
            allowed_origins,
            trusted_proxies,
            background: invalidation.into_iter().chain(jwks_warmup).chain(cluster.background).chain([scheduler, budget_watcher]).collect(),
            flusher: std::sync::Mutex::new(Some(flusher)),
            redis,
            idempotency: cluster.idempotency,
            cluster: cluster.view,
            csrf: crate::auth::csrf::CsrfKeys::new(settings_csrf_secret.as_ref().map(|s| s.expose())),
            abandoned: Default::default(),
        });
        Ok(Self { listener, state, tls })
    }

    /// The TLS files when `PAM_TLS_CERT`/`PAM_TLS_KEY` are set; `reload()` on it is what SIGHUP does.
    pub fn tls(&self) -> Option<TlsFiles> {
        self.tls.clone()
    }

    /// This node's push bus (publishing reaches the user's sockets on every node).
    pub fn push_bus(&self) -> Arc<dyn pam_actors::PushBus> {
        self.state.deps.push_bus.clone()
    }

    /// The bound address (the real port when the settings said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains: readiness 503 and the listener closed at
    /// once, every socket 1012, running chats get the grace period, then the server stops.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, state, tls } = self;
        // Dropped unfinished (the task running this was aborted: a crash, as far as the cluster
        // can tell), the heartbeat stops with it, so other nodes see this node die within its TTL.
        let _background = AbortOnDrop(state.background.iter().map(|task| task.abort_handle()).collect());
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %listener.local_addr()?, scheme, node = &*state.cluster.node, database = state.db.backend(), dev_auth = state.dev.is_some(), "pam-gateway listening");
        if state.dev.is_some() {
            tracing::info!("demo chat page: {scheme}://{}/", listener.local_addr()?);
        }
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            header_read_timeout: state.settings.header_read_timeout(),
            max_header_bytes: state.settings.max_header_bytes,
            tls,
        };
        let release = async move {
            let _ = release_rx.await;
        };
        let stop = async move {
            let _ = stop_rx.await;
        };
        let server = tokio::spawn(crate::http::server::serve(listener, router(state.clone()), options, release, stop));
        shutdown.await;
        // Draining first (readiness 503, upgrades refused), then the port is released at once: a
        // new process can bind it while this one drains.
        state.draining.store(true, Ordering::Release);
        let _ = release_tx.send(());
        drain(&state).await;
        let _ = stop_tx.send(());
        match tokio::time::timeout(Duration::from_secs(2), server).await {
            Ok(Ok(())) => {}
            Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
            Err(_) => tracing::warn!("HTTP connections still open after the drain; stopping anyway"),
        }
        state.supervisor.stop(None);
        for task in &state.background {
            task.abort();
        }
        // Gone from the registry at once; its sockets stop counting in every user's presence.
        if let Some(redis) = &state.cluster.redis {
            redis.deregister().await;
        }
        state.db.close().await;
        tracing::info!("pam-gateway stopped");
        Ok(())
    }
}

/// Aborts background tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// In dev mode on the embedded SQLite default, the demo traveller gets data once, so the demo
/// page answers from context on a fresh machine. Never on Postgres (production's database).
async fn seed_demo(db: &Database) {
    if db.backend() != "sqlite" {
        return;
    }
    let user = pam_protocol::UserId::parse(crate::auth::dev::DEMO_USER_ID).expect("the demo user id is a uuid");
    match crate::storage::demo_seed::seed_demo_traveller(db, &user).await {
        Ok(true) => tracing::info!(user = %user, "seeded the demo traveller"),
        Ok(false) => tracing::debug!("demo traveller already seeded"),
        Err(error) => tracing::warn!(error = %error, "could not seed the demo traveller; the demo answers without data"),
    }
}

/// The drain: readiness 503, sockets told to finish (legacy after their running chat, v2 at
/// once), then running turns get the rest of `PAM_SHUTDOWN_GRACE_MS`; whatever still runs is
/// recorded as unanswered, and the outbox is flushed or left in its journal.
async fn drain(state: &SharedState) {
    state.draining.store(true, Ordering::Release);
    let grace = state.settings.shutdown_grace();
    let deadline = Instant::now() + grace;
    let told = ractor::call!(state.supervisor, SupervisorMsg::Drain).unwrap_or(0);
    tracing::info!(connections = told, turns = state.deps.running.len(), grace_ms = grace.as_millis() as u64, "draining");
    // Connections close themselves at the grace deadline; allow a little for the close frames.
    while Instant::now() < deadline + Duration::from_secs(1) {
        if crate::http::health::stats(state).await.live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Turns outlive their sockets: they get what is left of the grace to finish and be stored.
    let left = deadline.saturating_duration_since(Instant::now());
    if !state.deps.running.wait_idle(left).await {
        let abandoned = state.deps.pipeline().abandon_running().await;
        tracing::warn!(abandoned, "shutdown grace over with turns still running; they are recorded as unanswered");
    }
    // The streams' last frames reach Redis, so their clients resume on another node.
    if let Some(store) = state.deps.resume.store() {
        let within = deadline.saturating_duration_since(Instant::now()).max(MIN_FINAL_FLUSH);
        if !store.flush(within).await {
            tracing::warn!("v2 stream frames still queued for Redis at shutdown were dropped");
        }
    }
    // The flusher stops between writes (a write leaves the outbox only once stored), then
    // the rest of the grace (at least a moment) goes to storing what waits.
    let flusher = state.flusher.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(flusher) = flusher {
        // Awaited: a flusher still mid-write on another worker would race the final flush.
        flusher.abort();
        let _ = flusher.await;
    }
    let flush_until = deadline.max(Instant::now() + MIN_FINAL_FLUSH);
    let store: &dyn ConversationStore = &state.db;
    crate::storage::outbox_flusher::final_flush(store, &state.deps.outbox, flush_until).await;
    // Let writers put the last close frames on the wire.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The outbox, with its journal unless `PAM_OUTBOX_JOURNAL` is empty.
fn open_outbox(path: &str) -> anyhow::Result<TurnOutbox> {
    if path.trim().is_empty() {
        tracing::warn!("PAM_OUTBOX_JOURNAL is empty: writes waiting for the database are kept in memory only and lost at shutdown");
        return Ok(TurnOutbox::new(TURN_OUTBOX_CAPACITY));
    }
    let journal = crate::storage::outbox_journal::FileJournal::new(path);
    journal.check_writable().with_context(|| format!("PAM_OUTBOX_JOURNAL: cannot write {path}"))?;
    Ok(TurnOutbox::with_journal(TURN_OUTBOX_CAPACITY, Arc::new(journal)))
}

/// The listener on `PAM_LISTEN`; a refusal says why and what to try instead, in one line.
fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.context("could not create the listen socket")?;
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket
        .bind(address)
        .and_then(|()| socket.listen(LISTEN_BACKLOG))
        .map_err(|error| anyhow::anyhow!("PAM_LISTEN={address}: {}", bind_refusal(&error, address)))
}

fn bind_refusal(error: &std::io::Error, address: SocketAddr) -> String {
    use std::io::ErrorKind;
    let other_port = SocketAddr::new(address.ip(), if address.port() == u16::MAX { 1024 } else { address.port() + 1 });
    match error.kind() {
        ErrorKind::AddrInUse => {
            format!(
                "the port is already in use (another pam-gateway or program listens there); stop it, or choose another port, e.g. PAM_LISTEN={other_port}"
            )
        }
        ErrorKind::PermissionDenied => format!(
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose a port from 1024, e.g. PAM_LISTEN={}",
            SocketAddr::new(address.ip(), 8080)
        ),
        ErrorKind::AddrNotAvailable => format!(
            "no network interface of this machine has the address {} ({error}); use 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or one of its addresses",
            address.ip()
        ),
        _ => format!("could not listen there ({error})"),
    }
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
