//! Structured logs. Nothing health-related is ever a field: requests are logged by method,
//! route pattern, status and latency under a request id; GraphQL errors by code.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: JSON lines when `json`, human-readable otherwise. The level
/// comes from `RUST_LOG`, `info` by default.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}
