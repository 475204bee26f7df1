//! The chain as a deterministic state machine: every validator applies the same ordered
//! proposals and so seals the same blocks. Nothing here knows about Raft or files; `storage`
//! persists the [`Record`]s that [`ChainState::apply`] returns.

use crate::block::{Block, BlockSignature, SignedBlock};
use crate::bytes::Hash32;
use crate::entry::{Entry, GenesisSpec, MemberId};
use crate::governance::{GovernanceError, MemberHistory, MemberSet};
use crate::merkle;
use crate::verify::EntryProof;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the leader replicates through consensus: entries to seal into the next block and
/// validators' signatures over blocks already sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Proposal {
    /// The proposing validator.
    pub proposer: MemberId,
    /// The proposer's clock, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Entries for the next block.
    #[serde(with = "crate::codec::entry_list_serde")]
    pub entries: Vec<Entry>,
    /// Signatures over sealed blocks.
    pub signatures: Vec<HeightSignature>,
}

/// A block signature with the height of the block it signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeightSignature {
    /// Height of the signed block.
    pub height: u64,
    /// The signature.
    pub signature: BlockSignature,
}

/// Where an entry is anchored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The entry's hash.
    pub entry_hash: Hash32,
    /// Height of its block.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// Hash of its block's header.
    pub block_hash: Hash32,
}

/// What became of one proposed entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryOutcome {
    /// On the chain (now, or already before: submission is idempotent).
    Anchored(Receipt),
    /// Refused by the chain's rules; the reason is for the submitter.
    Rejected(String),
}

/// The result of applying one consensus log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProposalOutcome {
    /// One outcome per proposed entry, in order.
    pub outcomes: Vec<EntryOutcome>,
}

/// A durable change to the chain, as `storage` writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A newly sealed block.
    Block(Block),
    /// A signature over the block at `height`.
    Signature(HeightSignature),
}

/// Why the chain state cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The genesis spec names no valid founders.
    #[error("invalid genesis: {0}")]
    Genesis(#[from] GovernanceError),
    /// Stored records do not continue the chain.
    #[error("stored record does not continue the chain at height {height}")]
    Discontinuous {
        /// The height expected next.
        height: u64,
    },
}

/// The chain held by one validator: blocks, gathered signatures and the entry index.
pub struct ChainState {
    blocks: Vec<SignedBlock>,
    entry_index: HashMap<Hash32, (u64, u32)>,
    history: MemberHistory,
    chain_id: Hash32,
}

impl ChainState {
    /// A chain holding only the (still unsigned) genesis block of `spec`.
    pub fn new(spec: &GenesisSpec) -> Result<ChainState, StateError> {
        let founders = MemberSet::founding(spec)?;
        let genesis = Block::genesis(spec);
        let chain_id = genesis.header.hash();
        let entry_index = [(genesis.entries[0].hash(), (0, 0))].into_iter().collect();
        Ok(ChainState {
            blocks: vec![SignedBlock {
                block: genesis,
                signatures: Vec::new(),
            }],
            entry_index,
            history: MemberHistory::new(founders),
            chain_id,
        })
    }

    /// The genesis block's hash, which identifies the chain.
    pub fn chain_id(&self) -> Hash32 {
        self.chain_id
    }

    /// Height of the last block.
    pub fn head_height(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    /// The last block.
    pub fn head(&self) -> &SignedBlock {
        &self.blocks[self.blocks.len() - 1]
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Option<&SignedBlock> {
        self.blocks.get(usize::try_from(height).ok()?)
    }

    /// Every block from genesis to the head, as an auditor reads a chain.
    pub fn blocks(&self) -> &[SignedBlock] {
        &self.blocks
    }

    /// Highest height up to which every block is signed by a majority of its member set.
    pub fn final_height(&self) -> Option<u64> {
        let mut last_final = None;
        for signed in &self.blocks {
            let height = signed.block.header.height;
            let need = self
                .history
                .at(height)
                .map_or(usize::MAX, MemberSet::finality_threshold);
            if signed.signatures.len() < need {
                break;
            }
            last_final = Some(height);
        }
        last_final
    }

    /// The member set in force at `height`.
    pub fn members_at(&self, height: u64) -> Option<&MemberSet> {
        self.history.at(height)
    }

    /// The member set in force for the next block.
    pub fn current_members(&self) -> &MemberSet {
        self.history
            .at(self.head_height() + 1)
            .unwrap_or_else(|| unreachable!("genesis set is always recorded"))
    }

    /// Whether `member` has a recorded signature on the block at `height`.
    pub fn has_signed(&self, member: MemberId, height: u64) -> bool {
        self.block(height)
            .is_some_and(|signed| signed.signatures.iter().any(|s| s.signer == member))
    }

    /// Where `entry_hash` is anchored, if it is.
    pub fn receipt(&self, entry_hash: &Hash32) -> Option<Receipt> {
        let &(height, index) = self.entry_index.get(entry_hash)?;
        Some(Receipt {
            entry_hash: *entry_hash,
            height,
            index,
            block_hash: self.block(height)?.block.header.hash(),
        })
    }

    /// Inclusion proof of an anchored entry, with its block's header and signatures.
    pub fn proof(&self, entry_hash: &Hash32) -> Option<EntryProof> {
        let &(height, index) = self.entry_index.get(entry_hash)?;
        let signed = self.block(height)?;
        let inclusion = merkle::prove(&signed.block.leaves(), index as usize)?;
        Some(EntryProof {
            entry: signed.block.entries.get(index as usize)?.clone(),
            header: signed.block.header.clone(),
            inclusion,
            signatures: signed.signatures.clone(),
        })
    }

    /// What the leader can tell a submitter before proposing: the receipt if the entry is
    /// already anchored, or why the chain would refuse it now.
    pub fn precheck(&self, entry: &Entry) -> Result<Option<Receipt>, String> {
        entry.check_shape()?;
        if let Some(receipt) = self.receipt(&entry.hash()) {
            return Ok(Some(receipt));
        }
        if let Entry::Governance(governance) = entry {
            self.current_members()
                .apply(&self.chain_id, governance)
                .map_err(|error| error.to_string())?;
        }
        Ok(None)
    }

    /// Applies one ordered proposal: records valid signatures, then seals the acceptable new
    /// entries into one block. Deterministic: same state and proposal, same result everywhere.
    pub fn apply(&mut self, proposal: &Proposal) -> (ProposalOutcome, Vec<Record>) {
        let mut records = Vec::new();
        for signature in &proposal.signatures {
            if self.accepts_signature(signature) {
                self.record_signature(signature.clone());
                records.push(Record::Signature(signature.clone()));
            }
        }
        let next_height = self.head_height() + 1;
        let mut members = self.current_members().clone();
        let mut members_changed = false;
        let mut sealed = Vec::new();
        let mut in_block: HashMap<Hash32, u32> = HashMap::new();
        let mut outcomes = Vec::with_capacity(proposal.entries.len());
        for entry in &proposal.entries {
            let hash = entry.hash();
            if let Some(receipt) = self.receipt(&hash) {
                outcomes.push(EntryOutcome::Anchored(receipt));
                continue;
            }
            if let Some(&index) = in_block.get(&hash) {
                outcomes.push(EntryOutcome::Anchored(Receipt {
                    entry_hash: hash,
                    height: next_height,
                    index,
                    block_hash: Hash32::ZERO,
                }));
                continue;
            }
            if let Err(reason) = entry.check_shape() {
                outcomes.push(EntryOutcome::Rejected(reason));
                continue;
            }
            if let Entry::Governance(governance) = entry {
                match members.apply(&self.chain_id, governance) {
                    Ok(next) => {
                        members = next;
                        members_changed = true;
                    }
                    Err(error) => {
                        outcomes.push(EntryOutcome::Rejected(error.to_string()));
                        continue;
                    }
                }
            }
            let index = sealed.len() as u32;
            in_block.insert(hash, index);
            sealed.push(entry.clone());
            outcomes.push(EntryOutcome::Anchored(Receipt {
                entry_hash: hash,
                height: next_height,
                index,
                block_hash: Hash32::ZERO,
            }));
        }
        if !sealed.is_empty() {
            let previous = &self.head().block.header;
            let block = Block::seal(
                next_height,
                previous.hash(),
                proposal.timestamp_ms.max(previous.timestamp_ms),
                proposal.proposer,
                sealed,
            );
            let block_hash = block.header.hash();
            for outcome in &mut outcomes {
                if let EntryOutcome::Anchored(receipt) = outcome {
                    if receipt.height == next_height {
                        receipt.block_hash = block_hash;
                    }
                }
            }
            self.push_block(block.clone(), members_changed.then_some(members));
            records.push(Record::Block(block));
        }
        (ProposalOutcome { outcomes }, records)
    }

    fn accepts_signature(&self, signature: &HeightSignature) -> bool {
        let Some(signed) = self.block(signature.height) else {
            return false;
        };
        let Some(members) = self.history.at(signature.height) else {
            return false;
        };
        !self.has_signed(signature.signature.signer, signature.height)
            && members.verifies_block_signature(&signed.block.header.hash(), &signature.signature)
    }

    fn record_signature(&mut self, signature: HeightSignature) {
        if let Some(signed) = self.blocks.get_mut(signature.height as usize) {
            signed.signatures.push(signature.signature);
            signed.signatures.sort_by_key(|s| s.signer);
        }
    }

    fn push_block(&mut self, block: Block, new_members: Option<MemberSet>) {
        let height = block.header.height;
        for (index, entry) in block.entries.iter().enumerate() {
            self.entry_index
                .insert(entry.hash(), (height, index as u32));
        }
        if let Some(members) = new_members {
            self.history.record(height + 1, members);
        }
        self.blocks.push(SignedBlock {
            block,
            signatures: Vec::new(),
        });
    }

    /// Re-applies a stored record (on restart or snapshot install). Blocks are taken as stored,
    /// not re-sealed: a tampered store is left for the auditor to find, not silently repaired.
    pub fn replay(&mut self, record: Record) -> Result<(), StateError> {
        match record {
            Record::Block(block) => {
                let height = self.head_height() + 1;
                if block.header.height != height {
                    return Err(StateError::Discontinuous { height });
                }
                let mut members = self.current_members().clone();
                let mut changed = false;
                for entry in &block.entries {
                    if let Entry::Governance(governance) = entry {
                        if let Ok(next) = members.apply(&self.chain_id, governance) {
                            members = next;
                            changed = true;
                        }
                    }
                }
                self.push_block(block, changed.then_some(members));
            }
            Record::Signature(signature) => {
                if signature.height > self.head_height() {
                    return Err(StateError::Discontinuous {
                        height: signature.height,
                    });
                }
                self.record_signature(signature);
            }
        }
        Ok(())
    }

    /// The whole chain as records, for a snapshot.
    pub fn to_records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for signed in &self.blocks {
            if signed.block.header.height > 0 {
                records.push(Record::Block(signed.block.clone()));
            }
            for signature in &signed.signatures {
                records.push(Record::Signature(HeightSignature {
                    height: signed.block.header.height,
                    signature: signature.clone(),
                }));
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::ValidatorKey;
    use crate::entry::{ApprovalPolicy, Governance, GovernanceAction, Member};
    use crate::governance::approve;
    use crate::verify::{audit_chain, verify_entry};

    fn setup() -> (Vec<ValidatorKey>, ChainState) {
        let keys: Vec<ValidatorKey> = (1..=4).map(|i| ValidatorKey::from_seed([i; 32])).collect();
        let spec = GenesisSpec {
            chain_name: "state".into(),
            timestamp_ms: 100,
            approval_policy: ApprovalPolicy::Majority,
            founders: (1..=3)
                .map(|id| Member::for_tests(id, &keys[id as usize - 1]))
                .collect(),
        };
        (keys, ChainState::new(&spec).unwrap())
    }

    fn anchor(i: u32) -> Entry {
        Entry::RecordAnchor {
            leaf: Hash32::digest(&[&i.to_be_bytes()]),
        }
    }

    fn sign_all(state: &mut ChainState, keys: &[ValidatorKey], signers: &[u64]) {
        let mut signatures = Vec::new();
        for height in 0..=state.head_height() {
            let header = state.block(height).unwrap().block.header.clone();
            for &id in signers {
                signatures.push(HeightSignature {
                    height,
                    signature: keys[id as usize - 1].sign_block(id, &header),
                });
            }
        }
        state.apply(&Proposal {
            signatures,
            ..Proposal::default()
        });
    }

    #[test]
    fn submission_is_idempotent_within_and_across_blocks() {
        let (_, mut state) = setup();
        let (outcome, records) = state.apply(&Proposal {
            proposer: 1,
            timestamp_ms: 5,
            entries: vec![anchor(1), anchor(1), anchor(2)],
            signatures: vec![],
        });
        assert_eq!(records.len(), 1);
        assert_eq!(state.head().block.entries.len(), 2);
        assert_eq!(
            state.head().block.header.timestamp_ms,
            100,
            "time never goes backwards"
        );
        let receipts: Vec<_> = outcome
            .outcomes
            .iter()
            .map(|o| match o {
                EntryOutcome::Anchored(r) => (r.height, r.index),
                EntryOutcome::Rejected(reason) => panic!("{reason}"),
            })
            .collect();
        assert_eq!(receipts, vec![(1, 0), (1, 0), (1, 1)]);
        let (outcome, records) = state.apply(&Proposal {
            proposer: 1,
            timestamp_ms: 200,
            entries: vec![anchor(2)],
            signatures: vec![],
        });
        assert!(records.is_empty(), "nothing new: no block");
        assert!(
            matches!(&outcome.outcomes[0], EntryOutcome::Anchored(r) if r.height == 1 && r.index == 1)
        );
    }

    #[test]
    fn signatures_are_recorded_once_and_only_when_valid() {
        let (keys, mut state) = setup();
        state.apply(&Proposal {
            proposer: 1,
            timestamp_ms: 500,
            entries: vec![anchor(1)],
            signatures: vec![],
        });
        let header = state.block(1).unwrap().block.header.clone();
        let good = HeightSignature {
            height: 1,
            signature: keys[0].sign_block(1, &header),
        };
        let outsider = HeightSignature {
            height: 1,
            signature: keys[3].sign_block(4, &header),
        };
        let mut forged = HeightSignature {
            height: 1,
            signature: keys[1].sign_block(2, &header),
        };
        forged.signature.signature.0[0] ^= 1;
        let (_, records) = state.apply(&Proposal {
            signatures: vec![good.clone(), good, outsider, forged],
            ..Proposal::default()
        });
        assert_eq!(records.len(), 1);
        assert_eq!(state.block(1).unwrap().signatures.len(), 1);
        assert_eq!(state.final_height(), None);
        sign_all(&mut state, &keys, &[2, 3]);
        assert_eq!(state.final_height(), Some(1));
    }

    #[test]
    fn governance_is_checked_against_the_members_in_force() {
        let (keys, mut state) = setup();
        let action = GovernanceAction::Admit {
            member: Member::for_tests(4, &keys[3]),
            epoch: 0,
        };
        let one = vec![approve(&keys[0], 1, &state.chain_id(), &action)];
        let under = Entry::Governance(Governance {
            action: action.clone(),
            approvals: one,
        });
        assert!(state.precheck(&under).is_err());
        let (outcome, _) = state.apply(&Proposal {
            proposer: 1,
            timestamp_ms: 500,
            entries: vec![under],
            signatures: vec![],
        });
        assert!(matches!(outcome.outcomes[0], EntryOutcome::Rejected(_)));
        let two = vec![
            approve(&keys[0], 1, &state.chain_id(), &action),
            approve(&keys[2], 3, &state.chain_id(), &action),
        ];
        let admit = Entry::Governance(Governance {
            action,
            approvals: two,
        });
        state.apply(&Proposal {
            proposer: 1,
            timestamp_ms: 500,
            entries: vec![admit],
            signatures: vec![],
        });
        assert!(!state.members_at(1).unwrap().contains(4));
        assert!(state.current_members().contains(4));
    }

    #[test]
    fn replayed_records_rebuild_the_same_chain_and_it_audits() {
        let (keys, mut state) = setup();
        for round in 0..3 {
            state.apply(&Proposal {
                proposer: 2,
                timestamp_ms: 1_000 + round,
                entries: (0..5).map(|i| anchor(round as u32 * 10 + i)).collect(),
                signatures: vec![],
            });
        }
        sign_all(&mut state, &keys, &[1, 3]);
        let (_, mut copy) = setup();
        for record in state.to_records() {
            copy.replay(record).unwrap();
        }
        assert_eq!(copy.head(), state.head());
        let blocks: Vec<_> = (0..=copy.head_height())
            .map(|h| copy.block(h).unwrap().clone())
            .collect();
        let report = audit_chain(&blocks, Some(copy.chain_id())).unwrap();
        assert!(report.pending_tail.is_empty());
        let proof = copy.proof(&anchor(13).hash()).unwrap();
        assert_eq!(verify_entry(&proof, &report), Ok(()));
    }
}
