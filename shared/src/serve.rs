//! `berth serve`: every route in one process on embedded storage, plus the job worker and the
//! schedule loop that Lambda deployments get from SQS and EventBridge.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::{self, RouteFilter};
use crate::app::{App, AppError, Settings};
use crate::jobs;

/// Which adapters `berth serve` runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// blob files, SQLite metadata and job table under a data directory
    Embedded {
        /// the data directory (blobs, uploads, `meta.db`)
        data_dir: PathBuf,
    },
    /// S3, DynamoDB and SQS named by `BERTH_BUCKET`, `BERTH_TABLE`, `BERTH_QUEUE_URL`
    Aws {
        /// create the bucket, table and queue when missing (for local use against moto)
        create_resources: bool,
    },
}

/// Where and how `berth serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// the storage backend
    pub backend: Backend,
    /// the listen address
    pub listen: SocketAddr,
    /// registry tunables
    pub settings: Settings,
    /// how often housekeeping jobs are scheduled
    pub sweep_interval: Duration,
    /// how many connections, and for how long, one process serves
    pub limits: ConnectionLimits,
}

/// Bounds on client connections, so idle or slow clients cannot exhaust the process: the file
/// descriptors, the tasks, or the patience of everyone else.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// connections served at once; more are closed as they arrive
    pub max_connections: usize,
    /// connections served at once from one client address
    pub max_per_ip: usize,
    /// how long a connection may take to send a request's headers (from when it opens, or from
    /// the end of its previous request)
    pub header_timeout: Duration,
    /// how long a request body may stall, or a kept-alive connection stay silent
    pub idle_timeout: Duration,
}

/// Connections from one address served at once unless configured otherwise: far above what a
/// client pushing layers in parallel opens, far below what exhausts the process.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// How long a request's headers may take to arrive unless configured otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a body may stall or a kept-alive connection stay silent unless configured otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// 4096 connections, or three quarters of this process's open-file limit when that is lower
/// (blob files, the database and the job table need descriptors too).
pub fn default_max_connections() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse::<usize>().ok()
    });
    soft_limit.map_or(1024, |n| n / 4 * 3).clamp(64, 4096)
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: default_max_connections(),
            max_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Counts open connections, in all and per client address; a [`Slot`] is one of them.
#[derive(Debug, Default)]
struct ConnectionCount {
    total: usize,
    per_ip: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    count: Arc<std::sync::Mutex<ConnectionCount>>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.count.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// A place for a connection from `ip`, unless the process or that address is at its limit.
fn admit(
    count: &Arc<std::sync::Mutex<ConnectionCount>>,
    limits: &ConnectionLimits,
    ip: std::net::IpAddr,
) -> Option<Slot> {
    let mut c = count.lock().ok()?;
    let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if c.total >= limits.max_connections || from_ip >= limits.max_per_ip {
        return None;
    }
    c.total += 1;
    c.per_ip.insert(ip, from_ip + 1);
    Some(Slot { count: count.clone(), ip })
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The application could not be assembled.
    #[error(transparent)]
    App(#[from] AppError),
    /// A setting is missing or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The administrator key could not be made sure of.
    #[error("bootstrapping the admin key: {0}")]
    Bootstrap(#[from] crate::identity::IdentityError),
    /// The listen socket failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// the address
        addr: SocketAddr,
        /// the cause
        source: std::io::Error,
    },
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let settings = crate::config::settings_from_env(options.settings.clone())?;
    let (app, described) = match &options.backend {
        Backend::Embedded { data_dir } => {
            (App::embedded(data_dir, settings)?, format!("embedded storage in {}", data_dir.display()))
        }
        Backend::Aws { create_resources } => {
            let aws = crate::aws::AwsSettings::from_env()?;
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let aws = if *create_resources { crate::aws::create_resources(&sdk, &aws).await? } else { aws };
            let described = format!("AWS (bucket {}, table {})", aws.bucket, aws.table);
            (crate::aws::app(&sdk, &aws, settings)?, described)
        }
    };
    let admin_key = crate::config::var("BERTH_ADMIN_ACCESS_KEY");
    let admin_secret = crate::config::var("BERTH_ADMIN_SECRET_KEY");
    let chosen = match (&admin_key, &admin_secret) {
        (Some(k), Some(s)) => Some((k.as_str(), s.as_str())),
        (None, None) => None,
        _ => {
            return Err(crate::config::ConfigError::Missing(
                "BERTH_ADMIN_ACCESS_KEY and BERTH_ADMIN_SECRET_KEY (set both or neither)",
            )
            .into())
        }
    };
    if let Some(created) = crate::identity::bootstrap::ensure_admin(app.meta.as_ref(), chosen, app.clock.now()).await? {
        // Printed once, to the operator's terminal; never logged.
        println!(
            "berth: created the first administrator (user \"admin\"). Save this key now; it is not shown again.\n  access key: {}\n  secret key: {}",
            created.access_key, created.secret_key
        );
    }
    let app = Arc::new(app);
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: options.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: options.listen, source })?;
    tracing::info!(%addr, backend = %described, "berth is serving the registry API");
    println!("berth listening on http://{addr} ({described})");

    tokio::spawn(schedule_loop(app.clone(), options.sweep_interval));
    tokio::spawn(cron_loop(app.clone()));
    tokio::spawn(worker_loop(app.clone()));

    let limits = options.limits;
    tracing::info!(
        max_connections = limits.max_connections,
        max_per_ip = limits.max_per_ip,
        header_timeout_s = limits.header_timeout.as_secs(),
        idle_timeout_s = limits.idle_timeout.as_secs(),
        "connection limits"
    );
    let count = Arc::new(std::sync::Mutex::new(ConnectionCount::default()));
    let mut refused_logged = std::time::Instant::now() - Duration::from_secs(60);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = admit(&count, &limits, peer.ip()) else {
                        // closed at once: cheaper than a 503 and holds nothing
                        if refused_logged.elapsed() >= Duration::from_secs(10) {
                            refused_logged = std::time::Instant::now();
                            tracing::warn!(client = %peer.ip(), "connection limit reached; closing new connections");
                        }
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(app.clone(), stream, peer.ip(), limits, slot));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_connection(
    app: Arc<App>,
    stream: tokio::net::TcpStream,
    peer: std::net::IpAddr,
    limits: ConnectionLimits,
    slot: Slot,
) {
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(crate::access::ClientIp(peer));
            let has_body = !body.is_end_stream();
            let stream = stall_limited(body.into_data_stream().map_err(std::io::Error::other), limits.idle_timeout);
            let req = http::Request::from_parts(parts, stream);
            let mut response = api::handle(&app, RouteFilter::All, req).await;
            // An error may be answered before the request body was read; say so, rather than
            // leave the client to find a connection closed under its next request.
            if has_body && !response.status().is_success() {
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // hyper runs this timer whenever it waits for a request head, so it also closes
        // kept-alive connections that stay silent
        .header_read_timeout(limits.header_timeout.min(limits.idle_timeout))
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    drop(slot);
}

/// A request body that fails once no bytes arrived for `idle` (a client trickling a body, or
/// gone silent mid-upload, does not hold its connection and staging open forever).
fn stall_limited(
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    idle: Duration,
) -> crate::storage::ByteStream {
    let body: crate::storage::ByteStream = Box::pin(body);
    Box::pin(futures_util::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, futures_util::StreamExt::next(&mut body)).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no request body bytes arrived for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    }))
}

/// Enqueues housekeeping at start (reclaiming what a crash left) and every `interval` after.
async fn schedule_loop(app: Arc<App>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        for job in jobs::housekeeping_jobs() {
            if let Err(e) = app.queue.enqueue(&job, Duration::ZERO).await {
                tracing::warn!(kind = %job.kind, error = %e, "could not schedule a housekeeping job");
            }
        }
    }
}

/// How often `berth serve` looks for due cron schedules (cleanup cycles fire within this of their
/// minute).
const CRON_TICK: Duration = Duration::from_secs(15);

/// Fires due cron schedules (cleanup cycles) through the same exactly-once path as the Lambda
/// scheduler, so several processes over one store never run a cycle twice.
async fn cron_loop(app: Arc<App>) {
    let mut ticker = tokio::time::interval(CRON_TICK);
    loop {
        ticker.tick().await;
        if let Err(e) = crate::schedule::ensure_builtins(&app).await {
            tracing::warn!(error = %e, "could not make sure of the built-in schedules");
        }
        if let Err(e) = crate::schedule::fire_due(&app).await {
            tracing::warn!(error = %e, "could not fire due schedules");
        }
    }
}

/// Runs queued jobs, polling when idle.
async fn worker_loop(app: Arc<App>) {
    loop {
        match jobs::work_once(&app, 10).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "job queue failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
