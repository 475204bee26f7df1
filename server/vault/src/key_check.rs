//! Opening the vault: the master key is checked against the database before anything is served.
//!
//! A mistyped key path used to make a fresh key silently: the server said it was ready, every
//! existing patient failed to decrypt, and patients created meanwhile were sealed under a key
//! nobody would use again. Now the first start writes the key's check value
//! ([`MasterKey::check_value`]) and every later start compares against it; a missing key file is
//! created only for a database that holds nothing sealed.

use crate::consent::{Consent, ConsentConfig, ConsentStartError};
use crate::crypto::{KeyFileError, MasterKey};
use crate::Vault;
use deadpool_postgres::Pool;
use std::path::PathBuf;
use uuid::Uuid;

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

/// The vault cannot be opened with the key it was given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenVaultError {
    /// The key could not be read or created.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The key file does not exist, but the database holds data sealed under some key.
    #[error(
        "{source_name} does not exist, but the database already holds data sealed under a master \
         key: point --master-key-file (MEDVAULT_MASTER_KEY_FILE) at that key; a new key would \
         make everything stored unreadable"
    )]
    MissingKey {
        /// The key file asked for.
        source_name: String,
    },
    /// The key is not the one the database was sealed with.
    #[error(
        "{source_name} is not the master key this database was sealed with; refusing to start \
         (check --master-key-file / MEDVAULT_MASTER_KEY_FILE)"
    )]
    WrongKey {
        /// The key file or variable used.
        source_name: String,
    },
    /// The database could not be read.
    #[error("database")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The stored consent trees cannot be used.
    #[error(transparent)]
    Consent(#[from] ConsentStartError),
}

impl Vault {
    /// Opens the vault over a migrated database with the master key from `source`, checked
    /// against the database's key check value (written here on the first start), and its
    /// consent trees, each checked against its grants and its stored root.
    pub async fn open(
        pool: Pool,
        source: &MasterKeySource,
        session_ttl: chrono::Duration,
        consent: ConsentConfig,
    ) -> Result<Vault, OpenVaultError> {
        let client = pool.get().await?;
        let stored: Option<Vec<u8>> = client
            .query_opt("SELECT check_value FROM master_key_check", &[])
            .await?
            .map(|row| row.get(0));
        let sealed_rows: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM patient_keys LIMIT 1) AS patients)
                      + (SELECT count(*) FROM (SELECT 1 FROM export_jobs LIMIT 1) AS exports)",
                &[],
            )
            .await?
            .get(0);
        let holds_sealed_data = stored.is_some() || sealed_rows > 0;
        let source_name = source.describe();
        let master = match (source.read()?, source) {
            (Some(master), _) => master,
            (None, MasterKeySource::File(path)) if !holds_sealed_data => MasterKey::create(path)?,
            (None, _) => return Err(OpenVaultError::MissingKey { source_name }),
        };
        match stored {
            Some(stored) if stored == master.check_value() => {}
            Some(_) => return Err(OpenVaultError::WrongKey { source_name }),
            None => {
                if !opens_a_patient_key(&client, &master).await? {
                    return Err(OpenVaultError::WrongKey { source_name });
                }
                let written = client
                    .execute(
                        "INSERT INTO master_key_check (check_value) VALUES ($1)
                         ON CONFLICT (singleton) DO NOTHING",
                        &[&master.check_value().as_slice()],
                    )
                    .await?;
                if written == 0 {
                    // Another server wrote its key's value first: it must be ours too.
                    let winner: Vec<u8> = client
                        .query_one("SELECT check_value FROM master_key_check", &[])
                        .await?
                        .get(0);
                    if winner != master.check_value() {
                        return Err(OpenVaultError::WrongKey { source_name });
                    }
                }
            }
        }
        store_missing_pseudonyms(&client, &master).await?;
        let consent = Consent::open(&client, &master, consent).await?;
        drop(client);
        Ok(Vault::new(pool, master, session_ttl, consent))
    }
}

/// Whether `master` unwraps a stored patient key, or there is none: how a database from before
/// key check values is verified once, before its value is written.
/// Stores the anchor pseudonym of every patient created before pseudonyms were kept, so that
/// every record-version leaf can be recomputed from the database alone.
async fn store_missing_pseudonyms(
    client: &deadpool_postgres::Client,
    master: &MasterKey,
) -> Result<(), tokio_postgres::Error> {
    let patients: Vec<Uuid> = client
        .query(
            "SELECT id FROM users WHERE role = 'patient' AND anchor_pseudonym IS NULL",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if patients.is_empty() {
        return Ok(());
    }
    let pseudonyms: Vec<Vec<u8>> = patients
        .iter()
        .map(|&patient| master.patient_pseudonym(patient).to_vec())
        .collect();
    client
        .execute(
            "UPDATE users u SET anchor_pseudonym = p.pseudonym
             FROM unnest($1::uuid[], $2::bytea[]) AS p(id, pseudonym)
             WHERE u.id = p.id AND u.anchor_pseudonym IS NULL",
            &[&patients, &pseudonyms],
        )
        .await?;
    Ok(())
}

async fn opens_a_patient_key(
    client: &deadpool_postgres::Client,
    master: &MasterKey,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT patient_id, wrapped_key FROM patient_keys LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.is_none_or(|row| {
        let wrapped: Vec<u8> = row.get(1);
        master.unwrap_patient_key(row.get(0), &wrapped).is_ok()
    }))
}
