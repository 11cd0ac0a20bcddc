//! The `berth` command: `berth serve` runs the registry on embedded storage; the other commands
//! (`login`, `registry`, `image`, `artifact`, `tag`, `user`, `key`, `audit`, `cleanup`,
//! `protect`, `gc`, `webhook`, `replication`, `cache`, `scan`, `trust`) are a client of a running server's management API.

/// The `cache` commands.
mod caches;
/// The client commands' command line.
mod cli;
/// The management API client and the stored credentials.
mod client;
/// What each client command does.
mod commands;
/// Text and JSON output.
mod output;
/// The `cleanup`, `protect` and `gc` commands.
mod policies;
/// The `replication` commands.
mod replications;
/// The `scan` commands.
mod scans;
/// The `trust` commands.
mod trust;
/// The `webhook` commands.
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use berth::app::Settings;
use berth::connections::ConnectionLimits;
use berth::serve::{serve, Backend, ServeOptions};

use cli::EXIT_CODES;
use commands::ClientCommand;
use output::Format;

/// Berth container registry.
#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: an OCI container registry", after_help = EXIT_CODES)]
struct Cli {
    /// Output format of the client commands: text (columns, `key: value` lines) or json (the server's JSON).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text, hide_possible_values = true)]
    output: Format,
    /// Items asked for per page when listing (tests use it to exercise paging).
    #[arg(long, global = true, hide = true, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    page_size: u16,
    /// The command to run.
    #[command(subcommand)]
    command: Command,
}

/// Which storage `berth serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendChoice {
    /// blob files, SQLite metadata and job table in the data directory
    Embedded,
    /// S3, DynamoDB and SQS
    Aws,
}

/// Every `berth` command.
#[derive(Subcommand)]
enum Command {
    /// Run the whole registry in this process on embedded storage.
    Serve {
        /// Storage backend: `embedded` (files + SQLite) or `aws` (S3 + DynamoDB + SQS from BERTH_* and AWS_* variables).
        #[arg(long, env = "BERTH_BACKEND", value_enum, default_value_t = BackendChoice::Embedded)]
        backend: BackendChoice,
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
        /// Open connections served at once; when full, the one quiet longest (at least 1 s) gives
        /// way to a new one, else the new one is closed (default: 4096, or three quarters of the
        /// open-file limit if lower).
        #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
        max_connections: Option<usize>,
        /// Open connections served at once from one client address.
        #[arg(long, env = "BERTH_MAX_CONNECTIONS_PER_IP", default_value_t = berth::connections::DEFAULT_MAX_CONNECTIONS_PER_IP)]
        max_connections_per_ip: usize,
        /// Seconds a connection may take to send a request's headers, counted from when it
        /// opens or from the end of its previous request.
        #[arg(long, env = "BERTH_HEADER_TIMEOUT_SECONDS", default_value_t = berth::connections::DEFAULT_HEADER_TIMEOUT.as_secs())]
        header_timeout: u64,
        /// Seconds a request body may stall, an answer wait for the client to read it, or a
        /// kept-alive connection stay silent, before the connection is closed.
        #[arg(long, env = "BERTH_IDLE_TIMEOUT_SECONDS", default_value_t = berth::connections::DEFAULT_IDLE_TIMEOUT.as_secs())]
        idle_timeout: u64,
    },
    /// Print the route table: per route its methods, path and the ports it uses (with
    /// `--output json` also each method's access rule and audit: what Terraform, the functions
    /// and the event files follow).
    Routes,
    /// A client of a running server's management API.
    #[command(flatten)]
    Client(ClientCommand),
}

/// Adds the exit codes to the help of `command` and of all its subcommands.
fn with_exit_codes(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_string()).collect();
    names.into_iter().fold(command.after_help(EXIT_CODES), |c, name| c.mut_subcommand(name, with_exit_codes))
}

/// Parses the command line (exit 2 with clap's message on a usage error).
fn parse() -> Cli {
    // the client commands (and theirs) end their help with the exit codes
    let clients: Vec<String> = ClientCommand::augment_subcommands(clap::Command::new("client"))
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let command = clients.into_iter().fold(Cli::command(), |c, name| c.mut_subcommand(name, with_exit_codes));
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Parses the command line and runs the command; the exit code says how it went.
fn main() -> ExitCode {
    let cli = parse();
    match cli.command {
        Command::Client(client) => run_client(cli.output, usize::from(cli.page_size), client),
        server => run_server(cli.output, server),
    }
}

/// Runs a client command; its errors go to stderr and decide the exit code.
fn run_client(format: Format, page_size: usize, command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::from(client::EXIT_REFUSED);
        }
    };
    match runtime.block_on(commands::run(format, page_size, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            if let (Format::Json, Some(body)) = (format, e.server_body()) {
                eprintln!("{body}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints the route table in `format`.
fn print_routes(format: Format) -> Result<(), String> {
    let routes = serde_json::to_value(&berth::api::ENDPOINTS[..]).map_err(|e| e.to_string())?;
    match format {
        Format::Json => println!("{}", output::json(&routes)),
        Format::Text => {
            let items = routes.as_array().cloned().unwrap_or_default();
            fn list(v: &serde_json::Value) -> String {
                v.as_array()
                    .map(|a| a.iter().filter_map(|m| m.as_str()).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            }
            let columns = [
                output::Column { header: "ROUTE", cell: |r| r["name"].as_str().unwrap_or("").to_string() },
                output::Column { header: "METHODS", cell: |r| list(&r["methods"]) },
                output::Column {
                    header: "PATH",
                    cell: |r| {
                        let prefix = r["prefix"].as_str().unwrap_or("");
                        let suffix = r["suffix"].as_str().unwrap_or("");
                        if r["has_repository"] == true {
                            format!("{prefix}/<name>{suffix}")
                        } else {
                            format!("{prefix}{suffix}")
                        }
                    },
                },
                output::Column { header: "PORTS", cell: |r| list(&r["ports"]) },
            ];
            print!("{}", output::table(&items, &columns));
        }
    }
    Ok(())
}

/// Runs `serve` or `routes`.
fn run_server(format: Format, command: Command) -> ExitCode {
    berth::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve {
            backend,
            create_resources,
            data_dir,
            listen,
            upload_expiry,
            sweep_interval,
            chunk_min_length,
            max_connections,
            max_connections_per_ip,
            header_timeout,
            idle_timeout,
        } => {
            let settings =
                Settings { upload_expiry: Duration::from_secs(upload_expiry), chunk_min_length, ..Settings::default() };
            let backend = match backend {
                BackendChoice::Aws => Backend::Aws { create_resources },
                BackendChoice::Embedded => Backend::Embedded { data_dir },
            };
            let limits = ConnectionLimits {
                max_connections: max_connections.unwrap_or_else(berth::connections::default_max_connections).max(1),
                max_per_ip: max_connections_per_ip.max(1),
                header_timeout: Duration::from_secs(header_timeout.max(1)),
                idle_timeout: Duration::from_secs(idle_timeout.max(1)),
            };
            let options = ServeOptions {
                backend,
                listen,
                settings,
                sweep_interval: Duration::from_secs(sweep_interval.max(1)),
                limits,
            };
            runtime.block_on(serve(options)).map_err(|e| e.to_string())
        }
        Command::Routes => print_routes(format),
        Command::Client(_) => Err("not a server command".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}
