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

use crate::api::{self, AllRoutes};
use crate::app::{App, AppError, Settings};
use crate::connections::{Admitted, ConnectionLimits, Connections, ProgressIo};
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
    let settings = options.settings.clone().with_env()?;
    let (app, described) = match &options.backend {
        Backend::Embedded { data_dir } => {
            (App::embedded(data_dir, settings)?, format!("embedded storage in {}", data_dir.display()))
        }
        Backend::Aws { create_resources } => {
            let aws = crate::aws::AwsSettings::from_env()?;
            let sdk = crate::aws::sdk_defaults().load().await;
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
    let listener = listen(options.listen).map_err(|source| ServeError::Listen { addr: options.listen, source })?;
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
    let connections = Connections::new(limits);
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
                    let admitted = match connections.admit(peer.ip()) {
                        Ok(admitted) => admitted,
                        Err(refused) => {
                            // closed at once: cheaper than a 503 and holds nothing
                            if refused_logged.elapsed() >= Duration::from_secs(10) {
                                refused_logged = std::time::Instant::now();
                                tracing::warn!(client = %peer.ip(), ?refused, "connection limit reached; closing new connections");
                            }
                            drop(stream);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let stream = connections.track(stream, &admitted);
                    tokio::spawn(serve_connection(app.clone(), stream, peer.ip(), limits, admitted));
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
    stream: ProgressIo<tokio::net::TcpStream>,
    peer: std::net::IpAddr,
    limits: ConnectionLimits,
    admitted: Admitted,
) {
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(crate::web::ClientIp(peer));
            let has_body = !body.is_end_stream();
            let stream = stall_limited(body.into_data_stream().map_err(std::io::Error::other), limits.idle_timeout);
            let req = http::Request::from_parts(parts, stream);
            let mut response = api::handle(&app, AllRoutes, req).await;
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
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = served => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        // a full process gave this quiet connection's place to a new one: dropping closes it
        () = admitted.evict.notified() => tracing::debug!(client = %peer, "quiet connection closed for a new one"),
    }
    drop(admitted);
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

/// Connections the kernel queues before they are accepted: the default (128) overflowed under a
/// connection flood on a loaded machine, and a legitimate client's handshake then waited for a
/// retransmission (about a second).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
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
        if let Err(e) = crate::jobs::ensure_builtins(&app).await {
            tracing::warn!(error = %e, "could not make sure of the built-in schedules");
        }
        if let Err(e) = crate::schedule::fire_due(&app).await {
            tracing::warn!(error = %e, "could not fire due schedules");
        }
    }
}

/// How many outbound jobs (webhook deliveries, replication checks and copies) `berth serve`
/// runs at once, beside the in-line ones.
const OUTBOUND_JOBS: usize = 16;

/// Runs queued jobs, polling when idle.
async fn worker_loop(app: Arc<App>) {
    let outbound = Arc::new(tokio::sync::Semaphore::new(OUTBOUND_JOBS));
    loop {
        match jobs::work_detached(&app, 10, &outbound).await {
            // idle: poll again in half a second, or at once when a request queues an event
            Ok(0) => {
                let _ = tokio::time::timeout(Duration::from_millis(500), app.events.queued.notified()).await;
            }
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
