//! A single validator inside another process: the chain `medvault demo` uses. Same storage,
//! consensus and signing as a cluster member, with no HTTP listener; the key and genesis are
//! created in the data directory the first time.

use crate::api::HeadResponse;
use crate::block::SignedBlock;
use crate::block::ValidatorKey;
use crate::bytes::Hash32;
use crate::entry::{ApprovalPolicy, Entry, GenesisSpec, Member};
use crate::governance::MemberSet;
use crate::node::{StartError, SubmitError, Validator, ValidatorConfig};
use crate::state::{ChainState, EntryOutcome};
use crate::verify::EntryProof;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File holding the embedded validator's signing key.
const KEY_FILE: &str = "validator.key";
/// File holding the embedded chain's genesis spec.
const GENESIS_FILE: &str = "genesis.json";
/// The embedded validator's member id.
const EMBEDDED_MEMBER: u64 = 1;

/// Why the embedded chain cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Key or genesis file trouble.
    #[error("{0}")]
    Setup(String),
    /// The validator did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A submission failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// A thread panicked while holding the chain state.
    #[error("the embedded chain's state is unreadable after a panic")]
    Poisoned,
    /// The validator did not become leader in time.
    #[error("the embedded validator did not become leader within {0:?}")]
    NoLeader(Duration),
}

/// A one-validator chain in this process.
pub struct EmbeddedChain {
    validator: Validator,
}

impl EmbeddedChain {
    /// Opens the chain in `dir`, creating key and genesis on first use, and waits until it
    /// accepts submissions.
    pub async fn open(dir: &Path) -> Result<EmbeddedChain, EmbeddedError> {
        let setup = |what: &str, error: &dyn std::fmt::Display| {
            EmbeddedError::Setup(format!("{what}: {error}"))
        };
        std::fs::create_dir_all(dir).map_err(|e| setup("data directory", &e))?;
        let key_path = dir.join(KEY_FILE);
        if !key_path.exists() {
            ValidatorKey::generate()
                .save(&key_path)
                .map_err(|e| setup("key", &e))?;
        }
        let key = ValidatorKey::load(&key_path).map_err(|e| setup("key", &e))?;
        let genesis_path = dir.join(GENESIS_FILE);
        if !genesis_path.exists() {
            let timestamp_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let spec = GenesisSpec {
                chain_name: "medvault-embedded".into(),
                timestamp_ms,
                approval_policy: ApprovalPolicy::Majority,
                founders: vec![Member {
                    id: EMBEDDED_MEMBER,
                    name: "embedded validator".into(),
                    public_key: key.public_key(),
                    address: "127.0.0.1:0".into(),
                }],
            };
            let json = serde_json::to_vec_pretty(&spec).map_err(|e| setup("genesis", &e))?;
            std::fs::write(&genesis_path, json).map_err(|e| setup("genesis", &e))?;
        }
        let genesis_json = std::fs::read(&genesis_path).map_err(|e| setup("genesis", &e))?;
        let genesis: GenesisSpec =
            serde_json::from_slice(&genesis_json).map_err(|e| setup("genesis", &e))?;
        let validator = Validator::start(ValidatorConfig {
            data_dir: dir.to_owned(),
            member_id: EMBEDDED_MEMBER,
            key,
            genesis,
        })
        .await?;
        let patience = Duration::from_secs(10);
        let mut metrics = validator.raft().metrics();
        let became_leader = tokio::time::timeout(patience, async {
            while metrics.borrow().current_leader != Some(EMBEDDED_MEMBER) {
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        if became_leader != Ok(true) {
            return Err(EmbeddedError::NoLeader(patience));
        }
        Ok(EmbeddedChain { validator })
    }

    /// Anchors entries; one outcome per entry, once durable.
    pub async fn submit(&self, entries: Vec<Entry>) -> Result<Vec<EntryOutcome>, EmbeddedError> {
        Ok(self.validator.submit(entries).await?)
    }

    /// Inclusion proof of an anchored entry, with its block's header and signatures.
    pub fn inclusion_proof(&self, entry_hash: &Hash32) -> Option<EntryProof> {
        self.validator.state().read().ok()?.proof(entry_hash)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Option<SignedBlock> {
        self.validator.state().read().ok()?.block(height).cloned()
    }

    fn read<T>(&self, read: impl FnOnce(&ChainState) -> T) -> Result<T, EmbeddedError> {
        let state = self
            .validator
            .state()
            .read()
            .map_err(|_| EmbeddedError::Poisoned)?;
        Ok(read(&state))
    }

    /// The chain's identity, head and final height, as a cluster's `GET /v1/head` gives them.
    pub fn head(&self) -> Result<HeadResponse, EmbeddedError> {
        self.read(HeadResponse::of)
    }

    /// The member set in force for the next block.
    pub fn members(&self) -> Result<MemberSet, EmbeddedError> {
        self.read(|state| state.current_members().clone())
    }

    /// Height of the last block.
    pub fn head_height(&self) -> u64 {
        self.validator
            .state()
            .read()
            .map_or(0, |state| state.head_height())
    }

    /// The validator underneath (to serve it over HTTP as well, for example).
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Stops the validator.
    pub async fn shutdown(&self) {
        self.validator.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{audit_chain, verify_entry};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn anchors_survive_a_restart_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (0u32..300)
            .map(|i| Entry::RecordAnchor {
                leaf: Hash32::digest(&[&i.to_be_bytes()]),
            })
            .collect();
        let chain = EmbeddedChain::open(dir.path()).await.unwrap();
        let outcomes = chain.submit(entries[..200].to_vec()).await.unwrap();
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, EntryOutcome::Anchored(_))));
        chain.shutdown().await;
        drop(chain);

        let chain = EmbeddedChain::open(dir.path()).await.unwrap();
        let outcomes = chain.submit(entries[150..].to_vec()).await.unwrap();
        assert_eq!(outcomes.len(), 150);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let blocks = loop {
            let blocks: Vec<_> = (0..=chain.head_height())
                .filter_map(|h| chain.block(h))
                .collect();
            if blocks.iter().all(|b| !b.signatures.is_empty())
                || std::time::Instant::now() > deadline
            {
                break blocks;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let report = audit_chain(&blocks, None).unwrap();
        assert_eq!(report.entries, 301, "300 anchors and genesis, each once");
        assert!(report.pending_tail.is_empty());
        let proof = chain.inclusion_proof(&entries[170].hash()).unwrap();
        assert_eq!(verify_entry(&proof, &report), Ok(()));
        chain.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tampered_chain_file_is_refused_at_open_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let chain = EmbeddedChain::open(dir.path()).await.unwrap();
        let leaf = Hash32::digest(&[b"tampered"]);
        chain
            .submit(vec![Entry::RecordAnchor { leaf }])
            .await
            .unwrap();
        chain.shutdown().await;
        drop(chain);

        let path = dir.path().join(crate::storage::CHAIN_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(32)
            .position(|window| window == leaf.0)
            .unwrap();
        bytes[at + 5] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let refusal = EmbeddedChain::open(dir.path())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            refusal.contains(&path.display().to_string())
                && refusal.contains("byte ")
                && refusal.contains("after block 0")
                && refusal.contains("checksum"),
            "{refusal}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file is as found");
    }
}
