//! The `berth` command: `berth serve` runs the registry on embedded storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use berth::app::Settings;
use berth::serve::{serve, Backend, ServeOptions};

/// Berth container registry.
#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: an OCI container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole registry in this process on embedded storage.
    Serve {
        /// Storage backend: `embedded` (files + SQLite) or `aws` (S3 + DynamoDB + SQS from BERTH_* and AWS_* variables).
        #[arg(long, env = "BERTH_BACKEND", default_value = "embedded", value_parser = ["embedded", "aws"])]
        backend: String,
        /// With `--backend aws`: create the bucket, table and queue when missing (local use against moto).
        #[arg(long)]
        create_resources: bool,
        /// Directory holding blobs, staged uploads and the SQLite metadata (embedded backend).
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        /// Seconds an upload session may sit idle before its data is reclaimed.
        #[arg(long, env = "BERTH_UPLOAD_EXPIRY", default_value_t = 86_400)]
        upload_expiry: u64,
        /// Seconds between housekeeping runs.
        #[arg(long, env = "BERTH_SWEEP_INTERVAL", default_value_t = 600)]
        sweep_interval: u64,
        /// Smallest chunk size advertised to chunking clients (OCI-Chunk-Min-Length); 0 = none.
        #[arg(long, env = "BERTH_CHUNK_MIN_LENGTH", default_value_t = 0)]
        chunk_min_length: u64,
    },
    /// Print the route table as JSON (what Terraform, the functions and the event files follow).
    Routes,
}

fn main() -> ExitCode {
    berth::telemetry::init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve {
            backend,
            create_resources,
            data_dir,
            listen,
            upload_expiry,
            sweep_interval,
            chunk_min_length,
        } => {
            let settings =
                Settings { upload_expiry: Duration::from_secs(upload_expiry), chunk_min_length, ..Settings::default() };
            let backend = match backend.as_str() {
                "aws" => Backend::Aws { create_resources },
                _ => Backend::Embedded { data_dir },
            };
            let options =
                ServeOptions { backend, listen, settings, sweep_interval: Duration::from_secs(sweep_interval.max(1)) };
            runtime.block_on(serve(options)).map_err(|e| e.to_string())
        }
        Command::Routes => serde_json::to_string_pretty(&berth::api::ROUTE_SPECS)
            .map(|json| println!("{json}"))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}
