//! What a server needs to start, gathered by the binary from flags and environment.

use crate::crypto::{KeyFileError, MasterKey};
use crate::graphql::QueryLimits;
use crate::vault::LoginThrottle;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the master key comes from.
#[derive(Clone)]
pub enum MasterKeySource {
    /// A key file, created with mode 0600 if missing.
    File(PathBuf),
    /// 64 hexadecimal digits given directly (for secret managers that inject environment
    /// variables). Never printed.
    Hex(String),
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::File(path) => write!(f, "File({})", path.display()),
            MasterKeySource::Hex(_) => f.write_str("Hex(<redacted>)"),
        }
    }
}

impl MasterKeySource {
    /// Reads the master key; `None` for a key file that does not exist.
    pub fn read(&self) -> Result<Option<MasterKey>, KeyFileError> {
        match self {
            MasterKeySource::File(path) => MasterKey::read(path),
            MasterKeySource::Hex(hex) => MasterKey::from_hex(hex).map(Some),
        }
    }

    /// Where the key comes from, for messages (never the key itself).
    pub fn describe(&self) -> String {
        match self {
            MasterKeySource::File(path) => format!("the master key file {}", path.display()),
            MasterKeySource::Hex(_) => "the master key given in MEDVAULT_MASTER_KEY".to_owned(),
        }
    }
}

/// Settings of one server process.
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
    /// How long a login session lasts.
    pub session_ttl: chrono::Duration,
    /// Most database connections per server.
    pub pool_size: usize,
    /// HTTP worker threads.
    pub workers: usize,
    /// Where export jobs write their files, one directory per job. Servers sharing a database
    /// must share this directory (a network volume) for downloads to reach any of them.
    pub export_dir: PathBuf,
    /// The exporting organization named in export manifests.
    pub operator_name: String,
    /// How failed logins are slowed down.
    pub login_throttle: LoginThrottle,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: QueryLimits::default(),
            graphiql: false,
            max_body_bytes: 2 * 1024 * 1024,
            max_batch_operations: 10,
            session_ttl: chrono::Duration::hours(12),
            pool_size: 32,
            workers: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2),
            export_dir: PathBuf::from(".medvault/exports"),
            operator_name: "medvault".to_owned(),
            login_throttle: LoginThrottle::default(),
        }
    }
}

/// Where the anchoring worker puts the outbox's entries.
#[derive(Clone, Debug)]
pub enum ChainTarget {
    /// No chain: entries wait in the outbox for a process that has one.
    None,
    /// A single-validator chain in this process, kept in this directory.
    Embedded(PathBuf),
}

/// Everything one medvault process is built from: `demo`, `serve`, `admin` and `export` fill it
/// from flags and environment, tests from their options.
#[derive(Clone)]
pub struct ApplicationConfig {
    /// The server's settings (some, such as the bind address, matter only when serving).
    pub settings: ServerSettings,
    /// The PostgreSQL connection string. Never printed.
    pub database_url: String,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    /// Where anchors go.
    pub chain: ChainTarget,
}
