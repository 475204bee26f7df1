//! The chain of a one-machine deployment, inside another process: `medvault demo`'s, and
//! `serve`'s when no cluster is named. One validator per founding member, as on a cluster (the
//! chain's rule: one validator per member organization), with the same storage, consensus,
//! signing and HTTP API, each listening on loopback at the address its genesis records. Keys
//! and genesis are made in the data directory the first time, for the founders named then.
//!
//! Layout: `DIR/genesis.json`, and per founding member `DIR/member-<id>/` holding its signing
//! key, Raft log and chain file (what `medvault audit --data-dir` reads).

use crate::api::HeadResponse;
use crate::block::SignedBlock;
use crate::block::ValidatorKey;
use crate::bytes::Hash32;
use crate::entry::{ApprovalPolicy, Entry, GenesisSpec, Member, MemberId};
use crate::governance::MemberSet;
use crate::node::{StartError, SubmitError, Validator, ValidatorConfig};
use crate::state::{ChainState, EntryOutcome};
use crate::verify::EntryProof;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// File holding a member's signing key, in its member directory.
const KEY_FILE: &str = "validator.key";
/// File holding the embedded chain's genesis spec.
pub const GENESIS_FILE: &str = "genesis.json";
/// How long opening waits for the validators to elect a leader.
const LEADER_PATIENCE: Duration = Duration::from_secs(10);
/// How long stopping waits for the last block's signatures.
const FINALITY_PATIENCE: Duration = Duration::from_secs(2);

/// The directory of member `id`'s validator inside an embedded chain's directory `dir`.
pub fn member_dir(dir: &Path, id: MemberId) -> PathBuf {
    dir.join(format!("member-{id}"))
}

/// Why the embedded chain cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Key or genesis file trouble.
    #[error("{0}")]
    Setup(String),
    /// A new chain needs at least one founding member.
    #[error(
        "no embedded chain in {0} yet, and no founding member to found one: name the first \
         hospital (medvault admin create --hospital NAME founds it)"
    )]
    NoFounders(PathBuf),
    /// A validator cannot listen at the address its genesis records.
    #[error(
        "member {member}'s validator cannot listen on {address} as the genesis records: {source}"
    )]
    Listen {
        /// The member.
        member: MemberId,
        /// The recorded address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
    /// The validator did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A submission failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// A thread panicked while holding the chain state.
    #[error("the embedded chain's state is unreadable after a panic")]
    Poisoned,
    /// The validators did not elect a leader in time.
    #[error("the embedded validators did not elect a leader within {0:?}")]
    NoLeader(Duration),
}

/// The validators of a one-machine chain, running in this process.
pub struct EmbeddedChain {
    /// One per founding member whose key is in the directory; never empty once opened.
    validators: Vec<Validator>,
    /// Their HTTP APIs, taken out when stopped.
    servers: Mutex<Vec<JoinHandle<std::io::Result<()>>>>,
    addresses: Vec<String>,
}

fn setup_error(what: &str, error: &dyn std::fmt::Display) -> EmbeddedError {
    EmbeddedError::Setup(format!("{what}: {error}"))
}

/// Writes a genesis naming `founders`, one key per founder, and returns a listener bound for
/// each founder at the address the genesis records for it.
async fn found(
    dir: &Path,
    founders: &[String],
) -> Result<(GenesisSpec, Vec<Option<TcpListener>>), EmbeddedError> {
    if founders.is_empty() {
        return Err(EmbeddedError::NoFounders(dir.to_owned()));
    }
    let mut members = Vec::new();
    let mut listeners = Vec::new();
    for (id, name) in (1..).zip(founders) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| setup_error("listening on loopback", &e))?;
        let address = listener
            .local_addr()
            .map_err(|e| setup_error("listening on loopback", &e))?
            .to_string();
        let member_dir = member_dir(dir, id);
        std::fs::create_dir_all(&member_dir).map_err(|e| setup_error("member directory", &e))?;
        let key = ValidatorKey::generate();
        key.save(&member_dir.join(KEY_FILE))
            .map_err(|e| setup_error("key (in a directory left by a founding that failed?)", &e))?;
        members.push(Member {
            id,
            name: name.clone(),
            public_key: key.public_key(),
            address,
        });
        listeners.push(Some(listener));
    }
    let genesis = GenesisSpec {
        chain_name: "medvault-embedded".into(),
        timestamp_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        approval_policy: ApprovalPolicy::Majority,
        founders: members,
    };
    let json = serde_json::to_vec_pretty(&genesis).map_err(|e| setup_error("genesis", &e))?;
    // Written under another name and renamed, so that a genesis file is always whole.
    let unfinished = dir.join(format!("{GENESIS_FILE}.new"));
    std::fs::write(&unfinished, json).map_err(|e| setup_error("genesis", &e))?;
    std::fs::rename(&unfinished, dir.join(GENESIS_FILE)).map_err(|e| setup_error("genesis", &e))?;
    Ok((genesis, listeners))
}

/// Binds the address the genesis records for `member`.
async fn bind(member: &Member) -> Result<TcpListener, EmbeddedError> {
    TcpListener::bind(&member.address)
        .await
        .map_err(|source| EmbeddedError::Listen {
            member: member.id,
            address: member.address.clone(),
            source,
        })
}

impl EmbeddedChain {
    /// Opens the chain in `dir` and starts the validator of every founding member whose key is
    /// there, each serving the API at its recorded address, then waits until they have a
    /// leader. A directory without a chain is founded with `founders` (one member each, ids
    /// from 1, a majority approving governance); once founded, `founders` is not read.
    pub async fn open(dir: &Path, founders: &[String]) -> Result<EmbeddedChain, EmbeddedError> {
        std::fs::create_dir_all(dir).map_err(|e| setup_error("data directory", &e))?;
        let genesis_path = dir.join(GENESIS_FILE);
        let (genesis, mut listeners) = if genesis_path.exists() {
            let json = std::fs::read(&genesis_path).map_err(|e| setup_error("genesis", &e))?;
            let genesis: GenesisSpec =
                serde_json::from_slice(&json).map_err(|e| setup_error("genesis", &e))?;
            (genesis, Vec::new())
        } else {
            found(dir, founders).await?
        };
        let mut chain = EmbeddedChain {
            validators: Vec::new(),
            servers: Mutex::new(Vec::new()),
            addresses: Vec::new(),
        };
        for (index, member) in genesis.founders.iter().enumerate() {
            let listener = listeners.get_mut(index).and_then(Option::take);
            if let Err(error) = chain.start_member(dir, member, &genesis, listener).await {
                chain.stop().await;
                return Err(error);
            }
        }
        if chain.validators.is_empty() {
            return Err(EmbeddedError::Setup(format!(
                "{} holds no founding member's key (member-<id>/{KEY_FILE})",
                dir.display()
            )));
        }
        if let Err(error) = chain.wait_for_leader().await {
            chain.stop().await;
            return Err(error);
        }
        Ok(chain)
    }

    /// Starts `member`'s validator if its key is in `dir`, serving on `listener` when founding
    /// has just bound one, else on the address the genesis records.
    async fn start_member(
        &mut self,
        dir: &Path,
        member: &Member,
        genesis: &GenesisSpec,
        listener: Option<TcpListener>,
    ) -> Result<(), EmbeddedError> {
        let data_dir = member_dir(dir, member.id);
        let key_path = data_dir.join(KEY_FILE);
        if !key_path.exists() {
            return Ok(());
        }
        let key = ValidatorKey::load(&key_path).map_err(|e| setup_error("key", &e))?;
        let listener = match listener {
            Some(listener) => listener,
            None => bind(member).await?,
        };
        let validator = Validator::start(ValidatorConfig {
            data_dir,
            member_id: member.id,
            key,
            genesis: genesis.clone(),
        })
        .await?;
        let server = tokio::spawn(crate::api::serve(listener, validator.clone()));
        self.servers
            .get_mut()
            .map_err(|_| EmbeddedError::Poisoned)?
            .push(server);
        self.validators.push(validator);
        self.addresses.push(member.address.clone());
        Ok(())
    }

    async fn wait_for_leader(&self) -> Result<(), EmbeddedError> {
        let mut metrics = self.validators[0].raft().metrics();
        let elected = tokio::time::timeout(LEADER_PATIENCE, async {
            while metrics.borrow().current_leader.is_none() {
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        match elected {
            Ok(true) => Ok(()),
            _ => Err(EmbeddedError::NoLeader(LEADER_PATIENCE)),
        }
    }

    /// The validator in this process that leads, else the first: submissions go to it, and it
    /// holds the most recent state.
    fn leading(&self) -> &Validator {
        self.validators
            .iter()
            .find(|validator| validator.leader().map(|(id, _)| id) == Some(validator.member_id()))
            .unwrap_or(&self.validators[0])
    }

    /// Anchors entries; one outcome per entry, once durable. Refused as
    /// [`SubmitError::NotLeader`] while the leader is a validator outside this process.
    pub async fn submit(&self, entries: Vec<Entry>) -> Result<Vec<EntryOutcome>, EmbeddedError> {
        Ok(self.leading().submit(entries).await?)
    }

    fn read<T>(&self, read: impl FnOnce(&ChainState) -> T) -> Result<T, EmbeddedError> {
        let state = self
            .leading()
            .state()
            .read()
            .map_err(|_| EmbeddedError::Poisoned)?;
        Ok(read(&state))
    }

    /// Inclusion proof of an anchored entry, with its block's header and signatures.
    pub fn inclusion_proof(&self, entry_hash: &Hash32) -> Option<EntryProof> {
        self.read(|state| state.proof(entry_hash)).ok().flatten()
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Option<SignedBlock> {
        self.read(|state| state.block(height).cloned())
            .ok()
            .flatten()
    }

    /// The chain's identity, head and final height, as a cluster's `GET /v1/head` gives them.
    pub fn head(&self) -> Result<HeadResponse, EmbeddedError> {
        self.read(HeadResponse::of)
    }

    /// The member set in force for the next block.
    pub fn members(&self) -> Result<MemberSet, EmbeddedError> {
        self.read(|state| state.current_members().clone())
    }

    /// Every block of each validator in this process, named by member, for auditing them
    /// against each other.
    pub fn blocks_of_each(&self) -> Result<Vec<(String, Vec<SignedBlock>)>, EmbeddedError> {
        self.validators
            .iter()
            .map(|validator| {
                let state = validator
                    .state()
                    .read()
                    .map_err(|_| EmbeddedError::Poisoned)?;
                Ok((
                    format!("embedded member {}", validator.member_id()),
                    state.blocks().to_vec(),
                ))
            })
            .collect()
    }

    /// Height of the last block.
    pub fn head_height(&self) -> u64 {
        self.read(ChainState::head_height).unwrap_or(0)
    }

    /// The `host:port` where the first of these validators serves the chain's API (for
    /// `medvault audit --node` and `chain govern --node`).
    pub fn address(&self) -> &str {
        &self.addresses[0]
    }

    /// Stops the validators and their APIs, once the last block is final (or after
    /// [`FINALITY_PATIENCE`]): validators hold their block signatures back briefly to let them
    /// ride with the next entries, and a chain stopped before they land would leave files that
    /// audit with a pending tail.
    pub async fn shutdown(&self) {
        let deadline = tokio::time::Instant::now() + FINALITY_PATIENCE;
        while tokio::time::Instant::now() < deadline
            && self
                .head()
                .is_ok_and(|head| head.final_height != Some(head.height))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop().await;
    }

    /// Stops the validators started so far and their APIs, at once (also what a failed
    /// [`EmbeddedChain::open`] does with those it started).
    async fn stop(&self) {
        let servers = match self.servers.lock() {
            Ok(mut servers) => std::mem::take(&mut *servers),
            Err(_) => Vec::new(),
        };
        for server in servers {
            server.abort();
            // Awaited so that the listener is closed when this returns.
            let _ = server.await;
        }
        for validator in &self.validators {
            validator.shutdown().await;
        }
    }
}

impl Drop for EmbeddedChain {
    fn drop(&mut self) {
        if let Ok(servers) = self.servers.get_mut() {
            for server in servers.iter() {
                server.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{audit_chain, verify_entry};

    fn founders(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    /// Waits until every block has signatures of a majority of `members`.
    async fn final_blocks(chain: &EmbeddedChain, members: usize) -> Vec<SignedBlock> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let blocks: Vec<_> = (0..=chain.head_height())
                .filter_map(|h| chain.block(h))
                .collect();
            if blocks.iter().all(|b| b.signatures.len() > members / 2)
                || std::time::Instant::now() > deadline
            {
                return blocks;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn anchors_survive_a_restart_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (0u32..300)
            .map(|i| Entry::RecordAnchor {
                leaf: Hash32::digest(&[&i.to_be_bytes()]),
            })
            .collect();
        let chain = EmbeddedChain::open(dir.path(), &founders(&["St. Mary's"]))
            .await
            .unwrap();
        let outcomes = chain.submit(entries[..200].to_vec()).await.unwrap();
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, EntryOutcome::Anchored(_))));
        chain.shutdown().await;
        drop(chain);

        let chain = EmbeddedChain::open(dir.path(), &[]).await.unwrap();
        let outcomes = chain.submit(entries[150..].to_vec()).await.unwrap();
        assert_eq!(outcomes.len(), 150);
        let blocks = final_blocks(&chain, 1).await;
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
        let chain = EmbeddedChain::open(dir.path(), &founders(&["St. Mary's"]))
            .await
            .unwrap();
        let leaf = Hash32::digest(&[b"tampered"]);
        chain
            .submit(vec![Entry::RecordAnchor { leaf }])
            .await
            .unwrap();
        chain.shutdown().await;
        drop(chain);

        let path = member_dir(dir.path(), 1).join(crate::storage::CHAIN_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(32)
            .position(|window| window == leaf.0)
            .unwrap();
        bytes[at + 5] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let refusal = EmbeddedChain::open(dir.path(), &[])
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_founding_hospital_runs_a_validator_that_signs_and_serves_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let chain = EmbeddedChain::open(dir.path(), &founders(&["St. Mary's", "Riverside"]))
            .await
            .unwrap();
        let names: Vec<String> = chain
            .members()
            .unwrap()
            .members
            .values()
            .map(|member| member.name.clone())
            .collect();
        assert_eq!(names, ["St. Mary's", "Riverside"]);
        let leaf = Hash32::digest(&[b"two founders"]);
        chain
            .submit(vec![Entry::RecordAnchor { leaf }])
            .await
            .unwrap();
        let blocks = final_blocks(&chain, 2).await;
        let report = audit_chain(&blocks, None).unwrap();
        assert!(report.pending_tail.is_empty(), "both validators sign");
        let head: HeadResponse = reqwest::get(format!("http://{}/v1/head", chain.address()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(head.chain_id, chain.head().unwrap().chain_id);
        chain.shutdown().await;
        drop(chain);

        // openraft's replication tasks let go of the Raft log a moment after shutdown returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let reopened = loop {
            match EmbeddedChain::open(dir.path(), &[]).await {
                Ok(chain) => break chain,
                Err(error) if std::time::Instant::now() < deadline => {
                    assert!(error.to_string().contains("already open"), "{error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("{error}"),
            }
        };
        assert!(reopened
            .inclusion_proof(&Entry::RecordAnchor { leaf }.hash())
            .is_some());
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn a_new_chain_needs_a_founder() {
        let dir = tempfile::tempdir().unwrap();
        let refusal = EmbeddedChain::open(dir.path(), &[]).await.err().unwrap();
        assert!(matches!(refusal, EmbeddedError::NoFounders(_)), "{refusal}");
    }
}
