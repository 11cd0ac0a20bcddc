//! Client connections of `berth serve`: which are admitted, and which give way when the process
//! is full. Idle and slow clients must not be able to exhaust the process, its descriptors, or
//! everyone else's patience.
//!
//! - At most [`ConnectionLimits::max_per_ip`] connections from one address; more are closed as
//!   they arrive.
//! - At most [`ConnectionLimits::max_connections`] in all. When full, a new connection takes the
//!   place of the one that moved a byte least recently, if that one has been quiet for at least
//!   [`EVICT_QUIET`]: an attacker holding connections open without using them (idle, unread
//!   responses, a trickled body) loses them to clients that do use theirs.
//! - Every read and write counts as progress ([`ProgressIo`]); a write that cannot move a byte for
//!   [`ConnectionLimits::idle_timeout`] (a client that never reads its answers) fails.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bounds on client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// connections served at once; when full, the quietest gives way or the new one is closed
    pub max_connections: usize,
    /// connections served at once from one client address
    pub max_per_ip: usize,
    /// how long a connection may take to send a request's headers (from when it opens, or from
    /// the end of its previous request)
    pub header_timeout: Duration,
    /// how long a request body may stall, a write wait for the client to read, or a kept-alive
    /// connection stay silent
    pub idle_timeout: Duration,
}

/// Connections from one address served at once unless configured otherwise: far above what a
/// client pushing layers in parallel opens, far below what exhausts the process.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// How long a request's headers may take to arrive unless configured otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a body may stall or a kept-alive connection stay silent unless configured otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection must have moved no byte before a new one may take its place in a full
/// process.
pub const EVICT_QUIET: Duration = Duration::from_secs(1);

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

/// One open connection as admission sees it.
#[derive(Debug)]
struct Open {
    ip: IpAddr,
    /// milliseconds since the table's epoch when it last moved a byte
    progress: Arc<AtomicU64>,
    /// told to close when another connection takes its place
    evict: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Open>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Table {
    fn release(&mut self, id: u64) {
        if let Some(gone) = self.open.remove(&id) {
            if let Some(n) = self.per_ip.get_mut(&gone.ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&gone.ip);
                }
            }
        }
    }
}

/// The open connections of one server and the limits they are admitted under.
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    epoch: Instant,
    table: Mutex<Table>,
}

/// An admitted connection: dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    id: u64,
    /// where the connection's I/O records progress
    pub progress: Arc<AtomicU64>,
    /// notified when the connection must give way to a new one
    pub evict: Arc<tokio::sync::Notify>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut table) = self.connections.table.lock() {
            table.release(self.id);
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// its address holds its limit already
    PerAddress,
    /// the process is full and no connection has been quiet long enough to give way
    Full,
}

impl Connections {
    /// No connections yet, admitted under `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections { limits, epoch: Instant::now(), table: Mutex::new(Table::default()) })
    }

    /// The limits connections are admitted under.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admits a connection from `ip`, evicting the quietest one if the process is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut table = self.table.lock().map_err(|_| Refused::Full)?;
        let from_ip = table.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.max_per_ip {
            return Err(Refused::PerAddress);
        }
        if table.open.len() >= self.limits.max_connections {
            let now = self.now_ms();
            let quietest = table
                .open
                .iter()
                .map(|(id, open)| (*id, open.progress.load(Ordering::Relaxed)))
                .min_by_key(|(_, progress)| *progress);
            match quietest {
                Some((id, progress)) if now.saturating_sub(progress) >= EVICT_QUIET.as_millis() as u64 => {
                    if let Some(open) = table.open.get(&id) {
                        open.evict.notify_one();
                    }
                    table.release(id);
                }
                _ => return Err(Refused::Full),
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let progress = Arc::new(AtomicU64::new(self.now_ms()));
        let evict = Arc::new(tokio::sync::Notify::new());
        table.open.insert(id, Open { ip, progress: progress.clone(), evict: evict.clone() });
        *table.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Admitted { connections: self.clone(), id, progress, evict })
    }

    /// Wraps an admitted connection's stream so its reads and writes record progress.
    pub fn track<T>(&self, io: T, admitted: &Admitted) -> ProgressIo<T> {
        ProgressIo {
            inner: io,
            progress: admitted.progress.clone(),
            epoch: self.epoch,
            write_stall: self.limits.idle_timeout,
            stalled: None,
        }
    }
}

/// A stream that records when it last moved a byte, and fails a write that cannot move one for
/// the stall limit.
#[derive(Debug)]
pub struct ProgressIo<T> {
    inner: T,
    progress: Arc<AtomicU64>,
    epoch: Instant,
    write_stall: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> ProgressIo<T> {
    fn moved(&mut self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.progress.store(now, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProgressIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProgressIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                self.stalled = None;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                let stall = self.write_stall;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", stall.as_secs()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(max_connections: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits { max_connections, max_per_ip, ..ConnectionLimits::default() }
    }

    #[test]
    fn addresses_are_held_to_their_limit() {
        let c = Connections::new(limits(10, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = c.admit(a).unwrap();
        let _second = c.admit(a).unwrap();
        assert_eq!(c.admit(a).unwrap_err(), Refused::PerAddress);
        let _other = c.admit(b).unwrap();
        drop(first);
        assert!(c.admit(a).is_ok());
    }

    #[tokio::test]
    async fn a_full_process_evicts_the_quietest_connection_once_it_was_quiet_long_enough() {
        let c = Connections::new(limits(2, 10));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let quiet = c.admit(ip).unwrap();
        let busy = c.admit(ip).unwrap();
        // nobody has been quiet for a second yet
        assert_eq!(c.admit(ip).unwrap_err(), Refused::Full);
        std::thread::sleep(EVICT_QUIET + Duration::from_millis(50));
        busy.progress.store(c.now_ms(), Ordering::Relaxed);
        let evicted = quiet.evict.notified();
        let newcomer = c.admit(ip).unwrap();
        tokio::time::timeout(Duration::from_millis(10), evicted).await.unwrap();
        // the evicted connection's own drop frees nothing twice
        drop(quiet);
        assert_eq!(c.admit(ip).unwrap_err(), Refused::Full);
        drop(newcomer);
        drop(busy);
    }
}
