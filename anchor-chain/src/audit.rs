//! The auditor over real sources: a stopped validator's data directory and running validators
//! over HTTP, each audited with [`crate::verify`], then compared height by height so that two
//! validators showing different histories are caught. What `medvault audit` runs; the binary only
//! parses flags into [`ChainSources`] and prints.

use crate::block::{Block, SignedBlock};
use crate::bytes::Hash32;
use crate::client::{ChainClient, ClientError};
use crate::entry::{Entry, GenesisSpec};
use crate::state::ChainState;
use crate::storage::{ChainStore, OpenError, CHAIN_FILE, LOG_FILE};
use crate::verify::{
    audit_chain, check_conflict, verify_entry, AuditError, AuditReport, EntryProof,
};
use std::collections::HashMap;
use std::path::PathBuf;

/// Where the chain to audit comes from, and what to trust.
#[derive(Clone, Debug, Default)]
pub struct ChainSources {
    /// Validators' `host:port`, each audited and cross-checked.
    pub nodes: Vec<String>,
    /// A stopped validator's data directory; its chain file is verified record by record and its
    /// head compared with the Raft log when there is one. Needs `genesis`.
    pub data_dir: Option<PathBuf>,
    /// The genesis spec to trust.
    pub genesis: Option<GenesisSpec>,
    /// The genesis hash to trust, when the spec is not at hand.
    pub genesis_hash: Option<Hash32>,
    /// Accept trailing blocks still short of a majority of signatures.
    pub allow_pending: bool,
}

impl ChainSources {
    /// Whether any source or trust anchor was given.
    pub fn is_given(&self) -> bool {
        !self.nodes.is_empty()
            || self.data_dir.is_some()
            || self.genesis.is_some()
            || self.genesis_hash.is_some()
            || self.allow_pending
    }

    fn trusted_genesis(&self) -> Option<Hash32> {
        match &self.genesis {
            Some(spec) => Some(Block::genesis(spec).header.hash()),
            None => self.genesis_hash,
        }
    }
}

/// The audit failed, or could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceAuditError {
    /// Neither a node nor a data directory was given.
    #[error("give --node or --data-dir")]
    NoSource,
    /// A data directory was given without the genesis spec to read it with.
    #[error("--data-dir needs --genesis")]
    DataDirNeedsGenesis,
    /// The chain file or Raft log failed verification, or could not be read.
    #[error(transparent)]
    Stored(#[from] OpenError),
    /// A validator could not be asked.
    #[error(transparent)]
    Node(#[from] ClientError),
    /// A source's chain does not audit.
    #[error("auditing {source_name}: {error}")]
    Chain {
        /// The node or directory.
        source_name: String,
        /// What is wrong with it.
        error: Box<AuditError>,
    },
    /// Trailing blocks lack a majority of signatures and that was not allowed.
    #[error("{source_name}: blocks {heights:?} are not yet signed by a majority")]
    Pending {
        /// The node or directory.
        source_name: String,
        /// The unsigned heights.
        heights: Vec<u64>,
    },
    /// Two sources disagree about a block.
    #[error("comparing {first} with {second}: {error}")]
    Conflict {
        /// The first source.
        first: String,
        /// The source that differs from it.
        second: String,
        /// The equivocation found.
        error: Box<AuditError>,
    },
    /// A source proved another entry than the one asked for.
    #[error("asked for a proof of entry {asked}, the chain source proved entry {proven}")]
    WrongEntry {
        /// The entry asked for.
        asked: Hash32,
        /// The entry the proof is about.
        proven: Hash32,
    },
    /// The proof does not check against the audited chain.
    #[error("the proof does not check against the audited chain: {0}")]
    Proof(AuditError),
    /// An export manifest is anchored before the height it says it was made at.
    #[error(
        "the export's manifest is anchored in block {anchored}, before the chain height \
         {made_at} it says it was made at"
    )]
    AnchoredTooEarly {
        /// Where the manifest hash is anchored.
        anchored: u64,
        /// The height the manifest names.
        made_at: u64,
    },
}

/// The first source's audit report, with the chain state read from the data directory when one
/// was given, so that proofs come from the very blocks that were audited.
pub struct AuditedChain {
    /// The report of the first source.
    pub report: AuditReport,
    stored_state: Option<ChainState>,
    final_entries: HashMap<Hash32, u64>,
}

impl AuditedChain {
    /// The height of the final block holding the entry with this hash, if one of the audited
    /// blocks does: a lookup for checking many entries without a proof request each.
    pub fn final_height_of(&self, entry_hash: &Hash32) -> Option<u64> {
        self.final_entries.get(entry_hash).copied()
    }
}

/// Audits every source's chain, then compares the chains height by height.
pub async fn audit_sources(sources: &ChainSources) -> Result<AuditedChain, SourceAuditError> {
    let trusted = sources.trusted_genesis();
    let mut chains: Vec<(String, Vec<SignedBlock>)> = Vec::new();
    let mut stored_state = None;
    if let Some(dir) = &sources.data_dir {
        let spec = sources
            .genesis
            .as_ref()
            .ok_or(SourceAuditError::DataDirNeedsGenesis)?;
        let stored = ChainStore::read_verified(&dir.join(CHAIN_FILE), spec)?;
        let log = dir.join(LOG_FILE);
        if log.exists() {
            stored.check_against_log(&log)?;
        }
        let state = stored.state;
        chains.push((dir.display().to_string(), state.blocks().to_vec()));
        stored_state = Some(state);
    }
    for node in &sources.nodes {
        chains.push((node.clone(), ChainClient::new(node).all_blocks().await?));
    }
    audit_chains(chains, trusted, sources.allow_pending, stored_state)
}

/// Audits chains already at hand (the blocks of validators running in this process, say) as
/// [`audit_sources`] audits those it reads: each on its own from genesis, against `trusted`
/// when given, then against each other. Trailing blocks still short of a majority of signatures
/// are allowed; their entries are not final.
pub fn audit_blocks(
    chains: Vec<(String, Vec<SignedBlock>)>,
    trusted: Option<Hash32>,
) -> Result<AuditedChain, SourceAuditError> {
    audit_chains(chains, trusted, true, None)
}

fn audit_chains(
    chains: Vec<(String, Vec<SignedBlock>)>,
    trusted: Option<Hash32>,
    allow_pending: bool,
    stored_state: Option<ChainState>,
) -> Result<AuditedChain, SourceAuditError> {
    let mut reports = Vec::new();
    for (name, blocks) in &chains {
        let report = audit_chain(blocks, trusted).map_err(|error| SourceAuditError::Chain {
            source_name: name.clone(),
            error: Box::new(error),
        })?;
        if !allow_pending && !report.pending_tail.is_empty() {
            return Err(SourceAuditError::Pending {
                source_name: name.clone(),
                heights: report.pending_tail.clone(),
            });
        }
        reports.push(report);
    }
    if let Some(((first_name, first_blocks), others)) = chains.split_first() {
        for (index, (name, blocks)) in others.iter().enumerate() {
            for (mine, theirs) in blocks.iter().zip(first_blocks) {
                let height = mine.block.header.height;
                let conflict = |error| SourceAuditError::Conflict {
                    first: first_name.clone(),
                    second: name.clone(),
                    error: Box::new(error),
                };
                let members = reports[index + 1]
                    .members
                    .at(height)
                    .ok_or_else(|| conflict(AuditError::UnknownBlock { height }))?;
                check_conflict(theirs, mine, members).map_err(conflict)?;
            }
        }
    }
    let report = reports
        .into_iter()
        .next()
        .ok_or(SourceAuditError::NoSource)?;
    let final_entries = chains
        .first()
        .map(|(_, blocks)| {
            blocks
                .iter()
                .filter(|signed| !report.pending_tail.contains(&signed.block.header.height))
                .flat_map(|signed| {
                    let height = signed.block.header.height;
                    signed
                        .block
                        .entries
                        .iter()
                        .map(move |entry| (entry.hash(), height))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(AuditedChain {
        report,
        stored_state,
        final_entries,
    })
}

/// Audits the sources' chain, then checks that `entry_hash` is in one of its final blocks.
/// Returns the checked proof, or `None` when the chain does not hold the entry.
pub async fn audited_inclusion(
    sources: &ChainSources,
    entry_hash: &Hash32,
) -> Result<Option<EntryProof>, SourceAuditError> {
    let audited = audit_sources(sources).await?;
    checked_inclusion(sources, &audited, entry_hash).await
}

/// Audits the sources' chain once, then looks up each of `entry_hashes` in its final blocks:
/// the checked proofs of those the chain holds, by entry hash.
pub async fn audited_inclusions(
    sources: &ChainSources,
    entry_hashes: &[Hash32],
) -> Result<HashMap<Hash32, EntryProof>, SourceAuditError> {
    let audited = audit_sources(sources).await?;
    let mut proofs = HashMap::new();
    for entry_hash in entry_hashes {
        if let Some(proof) = checked_inclusion(sources, &audited, entry_hash).await? {
            proofs.insert(*entry_hash, proof);
        }
    }
    Ok(proofs)
}

/// The proof that `entry_hash` is in a final block of the audited chain, checked against it.
async fn checked_inclusion(
    sources: &ChainSources,
    audited: &AuditedChain,
    entry_hash: &Hash32,
) -> Result<Option<EntryProof>, SourceAuditError> {
    let proof = if let Some(state) = &audited.stored_state {
        state.proof(entry_hash)
    } else if let Some(node) = sources.nodes.first() {
        ChainClient::new(node).proof(entry_hash).await?
    } else {
        return Err(SourceAuditError::NoSource);
    };
    let Some(proof) = proof else {
        return Ok(None);
    };
    let proven = proof.entry.hash();
    if proven != *entry_hash {
        return Err(SourceAuditError::WrongEntry {
            asked: *entry_hash,
            proven,
        });
    }
    verify_entry(&proof, &audited.report).map_err(SourceAuditError::Proof)?;
    Ok(Some(proof))
}

/// Checks that an export manifest's hash is anchored in a final block of the audited chain, no
/// older than the chain height the manifest says it was made at. `None` if it is not anchored.
pub async fn audited_manifest_anchor(
    sources: &ChainSources,
    manifest_hash: Hash32,
    made_at_height: u64,
) -> Result<Option<EntryProof>, SourceAuditError> {
    let entry_hash = Entry::ExportManifest { manifest_hash }.hash();
    let Some(proof) = audited_inclusion(sources, &entry_hash).await? else {
        return Ok(None);
    };
    if proof.header.height < made_at_height {
        return Err(SourceAuditError::AnchoredTooEarly {
            anchored: proof.header.height,
            made_at: made_at_height,
        });
    }
    Ok(Some(proof))
}
