//! Logging setup: JSON lines under Lambda (or `BERTH_LOG_FORMAT=json`), compact text locally.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber once; later calls are ignored. `RUST_LOG` is a list of
/// `level` and `target=level` directives (`info,berth=debug`); `info` when unset or unparsable.
/// A `Targets` filter rather than `EnvFilter`: the latter's span and field matching links a
/// regular-expression engine into every Lambda function.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("BERTH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let _ = if json {
        builder.json().finish().with(filter).try_init()
    } else {
        builder.compact().finish().with(filter).try_init()
    };
}
