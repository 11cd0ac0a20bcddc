//! Test support shared by every AWS adapter test: a real AWS-API server (moto) on loopback and
//! SDK configuration pointing at it. Nothing here fakes an AWS API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Where tests reach moto.
#[derive(Debug, Clone)]
pub struct Moto {
    /// e.g. `http://127.0.0.1:5123`
    pub endpoint: String,
}

static MOTO: OnceCell<Moto> = OnceCell::const_new();

/// The moto server for this test process: `BERTH_TEST_MOTO_URL` when the test command started
/// one for the whole run, otherwise a private one started now (and stopped when this process
/// exits). A missing moto is a test failure, never a skip.
pub async fn moto() -> &'static Moto {
    MOTO.get_or_init(|| async {
        if let Ok(url) = std::env::var("BERTH_TEST_MOTO_URL") {
            wait_ready(&url).await;
            return Moto { endpoint: url };
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (python, launcher) = moto_launcher();
        // The shell watches this process and stops moto when it exits, so no server outlives a test run.
        let script = format!(
            "\"$0\" \"$1\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $m",
            parent = std::process::id()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&python)
            .arg(&launcher)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto ({} {}): {e}", python.display(), launcher.display()));
        // reap the watcher shell when it ends, so it never lingers as a zombie
        std::thread::spawn(move || child.wait());
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url).await;
        Moto { endpoint: url }
    })
    .await
}

/// The venv's Python and `tests/moto_server.py` (moto serving one request at a time).
fn moto_launcher() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python =
        std::env::var("BERTH_MOTO_PYTHON").map(PathBuf::from).unwrap_or_else(|_| root.join(".venv/bin/python"));
    let launcher = root.join("tests/moto_server.py");
    if !python.exists() {
        panic!(
            "{} not found: run the README's test command (it installs moto into .venv), \
             or set BERTH_MOTO_PYTHON or BERTH_TEST_MOTO_URL",
            python.display()
        );
    }
    (python, launcher)
}

async fn wait_ready(url: &str) {
    let addr = url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto at {url} did not become ready within 30 s");
}

/// SDK configuration for moto: dummy credentials, `us-east-1`, the moto endpoint.
pub async fn aws_config() -> aws_config::SdkConfig {
    let moto = moto().await;
    berth::aws::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// A name unique to this test run, for buckets, tables and queues (lowercase, S3-safe).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple()).chars().take(60).collect()
}
