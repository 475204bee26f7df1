//! What a server needs to start, gathered by the binary from flags and environment.

use crate::graphql::QueryLimits;
use medvault_vault::VaultConfig;
use std::net::SocketAddr;

/// Settings of one server's HTTP side.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free one.
    pub bind: SocketAddr,
    /// GraphQL depth, complexity and introspection.
    pub limits: QueryLimits,
    /// Whether `GET /graphql` serves GraphiQL.
    pub graphiql: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most operations accepted in one batched request.
    pub max_batch_operations: usize,
    /// HTTP worker threads.
    pub workers: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: QueryLimits::default(),
            graphiql: false,
            max_body_bytes: 2 * 1024 * 1024,
            max_batch_operations: 10,
            workers: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2),
        }
    }
}

/// Everything one served medvault process is built from: `demo` and `serve` fill it from flags
/// and environment, tests from their options.
#[derive(Clone, Debug)]
pub struct ApplicationConfig {
    /// The HTTP side.
    pub settings: ServerSettings,
    /// The vault, its database, key, exports and chain.
    pub vault: VaultConfig,
}
