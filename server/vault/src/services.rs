//! Everything a medvault process runs besides its transports, started in one place: the vault
//! over its pool, the export job machinery, and the anchoring worker on its chain.

use crate::anchoring::db_audit_jobs::DatabaseAudits;
use crate::anchoring::{chain_check, AnchorChain, AnchoringError, AnchoringWorker, ChainMismatch};
use crate::consent::{ConsentConfig, ConsentSettings};
use crate::database::{self, DatabaseError};
use crate::exports::Exports;
use crate::{LoginThrottle, MasterKeySource, OpenVaultError, Vault};
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::embedded::{EmbeddedChain, EmbeddedError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the anchoring worker puts the outbox's entries.
#[derive(Clone, Debug)]
pub enum ChainTarget {
    /// No chain: entries wait in the outbox for a process that has one.
    None,
    /// A one-machine chain in this process, one validator per founding member, kept in `dir`.
    Embedded {
        /// Where the chain lives.
        dir: PathBuf,
        /// Who founds the chain if `dir` holds none yet, besides the hospitals the database
        /// already holds (the hospital `admin create` is about to create, the demo's).
        founders: Vec<String>,
    },
    /// The members' validator cluster, through any of the nodes at these addresses (`host:port`
    /// or URL), following the leader.
    Cluster(Vec<String>),
}

/// What the vault's side of a process is built from.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// The PostgreSQL connection string. Never printed.
    pub database_url: String,
    /// Most database connections.
    pub pool_size: usize,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    /// How long a login session lasts.
    pub session_ttl: chrono::Duration,
    /// How failed logins are slowed down.
    pub login_throttle: LoginThrottle,
    /// Where export jobs write their files, one directory per job. Servers sharing a database
    /// must share this directory (a network volume) for downloads to reach any of them.
    pub export_dir: PathBuf,
    /// The exporting organization named in export manifests.
    pub operator_name: String,
    /// Where anchors go.
    pub chain: ChainTarget,
    /// The directory holding the consent circuit's keys; development keys are made there on the
    /// first start when it holds none.
    pub consent_keys_dir: PathBuf,
    /// The depth (4-ary levels) of development keys made on the first start; keys that exist
    /// bring their own.
    pub consent_depth: u32,
    /// The consent proof flow's time limits.
    pub consent: ConsentSettings,
}

impl VaultConfig {
    /// The defaults for a vault over `database_url` with the master key from `master_key`.
    pub fn new(database_url: String, master_key: MasterKeySource) -> Self {
        VaultConfig {
            database_url,
            pool_size: 32,
            master_key,
            session_ttl: chrono::Duration::hours(12),
            login_throttle: LoginThrottle::default(),
            export_dir: PathBuf::from(".medvault/exports"),
            operator_name: "medvault".to_owned(),
            chain: ChainTarget::None,
            consent_keys_dir: PathBuf::from(".medvault/consent-keys"),
            consent_depth: medvault_circuits::DEFAULT_DEPTH,
            consent: ConsentSettings::default(),
        }
    }
}

/// The services could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The connection string is invalid or the pool could not be built.
    #[error("opening the database")]
    Database(#[source] DatabaseError),
    /// The schema could not be migrated.
    #[error("migrating the database")]
    Migrate(#[source] DatabaseError),
    /// The master key is missing, unreadable or not the database's.
    #[error(transparent)]
    Vault(#[from] OpenVaultError),
    /// The hospitals that would found the embedded chain could not be read.
    #[error("reading the hospitals that found the embedded anchor chain")]
    Founders(#[source] crate::VaultError),
    /// The embedded anchor chain did not start.
    #[error("starting the embedded anchor chain")]
    Chain(#[from] EmbeddedError),
    /// The configured chain is not the one this database anchored on.
    #[error("refusing to start")]
    ChainMismatch(#[source] ChainMismatch),
}

/// How long start-up waits for the chain to answer the start-up check before serving anyway,
/// leaving the check to the anchoring worker.
const CHAIN_CHECK_PATIENCE: Duration = Duration::from_secs(10);

/// Who founds a new embedded chain: the hospitals the database holds, oldest first, then
/// `others` not among them.
async fn founding_hospitals(
    pool: &deadpool_postgres::Pool,
    others: &[String],
) -> Result<Vec<String>, StartError> {
    let read = async {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT name FROM organizations WHERE kind = 'hospital' ORDER BY created_at, name",
                &[],
            )
            .await?;
        Ok::<_, crate::VaultError>(rows.iter().map(|row| row.get(0)).collect::<Vec<String>>())
    };
    let mut founders = read.await.map_err(StartError::Founders)?;
    for other in others {
        if !founders.contains(other) {
            founders.push(other.clone());
        }
    }
    Ok(founders)
}

/// Runs the chain check before serving: a chain that answers and disagrees refuses the start;
/// one that cannot be reached is checked by the worker before it anchors anything. Returns
/// whether the check passed.
async fn check_chain_at_start(
    pool: &deadpool_postgres::Pool,
    chain: &AnchorChain,
) -> Result<bool, StartError> {
    let checked = tokio::time::timeout(CHAIN_CHECK_PATIENCE, async {
        chain_check::check(&pool.get().await?, chain).await
    })
    .await;
    match checked {
        Ok(Ok(())) => Ok(true),
        Ok(Err(AnchoringError::Mismatch(mismatch))) => Err(StartError::ChainMismatch(mismatch)),
        Ok(Err(error)) => {
            tracing::warn!(%error, "the anchor chain cannot be checked now; anchoring waits until it can");
            Ok(false)
        }
        Err(_) => {
            tracing::warn!(
                patience_s = CHAIN_CHECK_PATIENCE.as_secs(),
                "the anchor chain did not answer; anchoring waits until it can be checked"
            );
            Ok(false)
        }
    }
}

/// The vault, the export jobs and the anchoring worker of one process. [`Services::start`] is
/// the one place they are started, for a served application and for commands that serve
/// nothing (`medvault export`, `admin`).
pub struct Services {
    vault: Vault,
    exports: Exports,
    anchoring: Option<AnchoringWorker>,
    database_audits: DatabaseAudits,
}

impl Services {
    /// Connects and migrates the database, opens the vault (checking the master key against
    /// the database), opens the chain and starts the anchoring worker on it.
    pub async fn start(config: &VaultConfig) -> Result<Self, StartError> {
        let pool = database::connect_pool(&config.database_url, config.pool_size)
            .map_err(StartError::Database)?;
        database::migrate(&pool)
            .await
            .map_err(StartError::Migrate)?;
        let consent = ConsentConfig {
            keys_dir: config.consent_keys_dir.clone(),
            depth_if_created: config.consent_depth,
            settings: ConsentSettings {
                anchoring_wait: config
                    .consent
                    .anchoring_wait
                    .filter(|_| !matches!(config.chain, ChainTarget::None)),
                ..config.consent
            },
        };
        let vault = Vault::open(pool, &config.master_key, config.session_ttl, consent)
            .await?
            .with_login_throttle(config.login_throttle);
        let chain = match &config.chain {
            ChainTarget::None => None,
            ChainTarget::Embedded { dir, founders } => {
                let founders = founding_hospitals(vault.pool(), founders).await?;
                Some(AnchorChain::Embedded(
                    EmbeddedChain::open(dir, &founders).await?,
                ))
            }
            ChainTarget::Cluster(nodes) => {
                Some(AnchorChain::Cluster(ChainClient::for_nodes(nodes)))
            }
        };
        let (vault, anchoring) = match chain.map(Arc::new) {
            None => (vault, None),
            Some(chain) => match check_chain_at_start(vault.pool(), &chain).await {
                Ok(checked) => {
                    let worker =
                        AnchoringWorker::start(vault.pool().clone(), chain.clone(), checked);
                    (vault.with_chain(chain), Some(worker))
                }
                Err(refusal) => {
                    chain.shutdown().await;
                    return Err(refusal);
                }
            },
        };
        let exports = Exports::new(
            vault.clone(),
            config.export_dir.clone(),
            config.operator_name.clone(),
        );
        let database_audits = DatabaseAudits::new(vault.pool().clone(), anchoring.clone());
        Ok(Services {
            vault,
            exports,
            anchoring,
            database_audits,
        })
    }

    /// The vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The export job machinery.
    pub fn exports(&self) -> &Exports {
        &self.exports
    }

    /// The auditors' database audits.
    pub fn database_audits(&self) -> &DatabaseAudits {
        &self.database_audits
    }

    /// The anchoring worker, if the configuration names a chain.
    pub fn anchoring(&self) -> Option<&AnchoringWorker> {
        self.anchoring.as_ref()
    }

    /// Stops the anchoring worker and shuts its chain down.
    pub async fn stop(self) {
        if let Some(anchoring) = self.anchoring {
            anchoring.stop().await;
        }
    }
}
