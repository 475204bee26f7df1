//! The Groth16 keys of the consent circuit this server verifies with, and serves to doctors.
//!
//! Production keys come from the member hospitals' ceremony (`medvault keys ceremony`) and are
//! pointed at with a directory. When the directory holds no keys, the first start makes them with
//! a single-party setup, as the master key is made on first run: fine for one machine and the
//! demo, and logged as such, since whoever ran it could forge proofs.

use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_circuits::setup::{PROVING_KEY_FILE, VERIFYING_KEY_FILE};
use medvault_circuits::{ConsentProvingKey, ConsentVerifyingKey, OsRng, PreparedConsentKey};
use sha3::{Digest, Sha3_256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `VerifyingKey` chain entry of a consent verifying key: its SHA3-256 and a label naming
/// the tree depth it is for. The server anchors it and `audit access` looks for it.
pub fn verifying_key_entry(key_sha3: [u8; 32], depth: u32) -> Entry {
    Entry::VerifyingKey {
        key_hash: Hash32(key_sha3),
        label: format!("medvault consent circuit, 4-ary tree depth {depth}"),
    }
}

/// The consent circuit's keys, loaded and checked to belong together.
pub struct ConsentKeys {
    depth: u32,
    verifying: PreparedConsentKey,
    verifying_key_bytes: Vec<u8>,
    verifying_key_sha3: [u8; 32],
    proving_key_bytes: Arc<[u8]>,
    proving_key_sha3: [u8; 32],
}

/// The consent keys could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentKeyError {
    /// A key file is missing, unreadable or malformed.
    #[error("reading the consent keys in {dir}")]
    Read {
        /// The key directory.
        dir: String,
        /// What failed.
        #[source]
        source: medvault_circuits::Error,
    },
    /// Only one of the two key files is there.
    #[error(
        "{dir} holds only one of {PROVING_KEY_FILE} and {VERIFYING_KEY_FILE}; put back the other \
         (or empty the directory to make development keys)"
    )]
    Incomplete {
        /// The key directory.
        dir: String,
    },
    /// The verifying key is not the proving key's.
    #[error("the proving and verifying keys in {dir} are not from the same setup")]
    Mismatch {
        /// The key directory.
        dir: String,
    },
    /// Making development keys failed.
    #[error("making development consent keys in {dir}")]
    Create {
        /// The key directory.
        dir: String,
        /// What failed.
        #[source]
        source: medvault_circuits::Error,
    },
    /// The key directory could not be created.
    #[error("creating {dir}")]
    Directory {
        /// The key directory.
        dir: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl ConsentKeys {
    /// Loads the keys in `dir`, or, when it holds neither file, makes development keys for trees
    /// of `depth_if_created` there. CPU-heavy (a setup takes seconds): call it from a blocking
    /// thread.
    pub fn load_or_create(dir: &Path, depth_if_created: u32) -> Result<Self, ConsentKeyError> {
        let name = dir.display().to_string();
        let proving_path = dir.join(PROVING_KEY_FILE);
        let verifying_path = dir.join(VERIFYING_KEY_FILE);
        match (proving_path.exists(), verifying_path.exists()) {
            (true, true) => {}
            (false, false) => create(dir, depth_if_created)?,
            _ => return Err(ConsentKeyError::Incomplete { dir: name }),
        }
        let read = |source| ConsentKeyError::Read {
            dir: name.clone(),
            source,
        };
        let proving_key_bytes = std::fs::read(&proving_path).map_err(|source| {
            read(medvault_circuits::Error::Io {
                path: proving_path.display().to_string(),
                source,
            })
        })?;
        let proving = ConsentProvingKey::from_bytes(&proving_key_bytes).map_err(read)?;
        let verifying = ConsentVerifyingKey::read(&verifying_path).map_err(read)?;
        if proving.verifying_key() != verifying {
            return Err(ConsentKeyError::Mismatch { dir: name });
        }
        let verifying_key_bytes = verifying.to_bytes();
        Ok(ConsentKeys {
            depth: verifying.depth(),
            verifying: verifying.prepare(),
            verifying_key_sha3: Sha3_256::digest(&verifying_key_bytes).into(),
            verifying_key_bytes,
            proving_key_sha3: Sha3_256::digest(&proving_key_bytes).into(),
            proving_key_bytes: proving_key_bytes.into(),
        })
    }

    /// The depth of the consent trees the keys prove membership in.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The prepared verifying key.
    pub fn verifying(&self) -> &PreparedConsentKey {
        &self.verifying
    }

    /// The verifying key file's bytes, kept in the database for auditors.
    pub fn verifying_key_bytes(&self) -> &[u8] {
        &self.verifying_key_bytes
    }

    /// SHA3-256 of the verifying key file: what is anchored.
    pub fn verifying_key_sha3(&self) -> [u8; 32] {
        self.verifying_key_sha3
    }

    /// The proving key file's bytes, served to doctors' clients.
    pub fn proving_key_bytes(&self) -> Arc<[u8]> {
        self.proving_key_bytes.clone()
    }

    /// SHA3-256 of the proving key file, which a client checks a download against.
    pub fn proving_key_sha3(&self) -> [u8; 32] {
        self.proving_key_sha3
    }
}

fn create(dir: &Path, depth: u32) -> Result<(), ConsentKeyError> {
    let name = dir.display().to_string();
    std::fs::create_dir_all(dir).map_err(|source| ConsentKeyError::Directory {
        dir: name.clone(),
        source,
    })?;
    let failed = |source| ConsentKeyError::Create {
        dir: name.clone(),
        source,
    };
    tracing::warn!(
        dir = %name,
        depth,
        "no consent keys: making development keys with a single-party setup; production keys \
         come from `medvault keys ceremony`"
    );
    let (proving, verifying) = medvault_circuits::setup(depth, &mut OsRng).map_err(failed)?;
    let partial: PathBuf = dir.join(format!("{PROVING_KEY_FILE}.partial"));
    proving.write(&partial).map_err(failed)?;
    verifying
        .write(&dir.join(VERIFYING_KEY_FILE))
        .map_err(failed)?;
    std::fs::rename(&partial, dir.join(PROVING_KEY_FILE)).map_err(|source| {
        failed(medvault_circuits::Error::Io {
            path: partial.display().to_string(),
            source,
        })
    })
}
