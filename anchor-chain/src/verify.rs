//! The auditor: checks a chain, an entry's inclusion, and pairs of conflicting blocks while
//! trusting no node. It depends on neither `consensus` nor `storage`: blocks may come from a
//! node's HTTP API, a stored file or anywhere else, and every failure keeps its raw evidence.

use crate::block::{BlockHeader, BlockSignature, SignedBlock, BLOCK_VERSION};
use crate::bytes::{Hash32, SignatureBytes};
use crate::entry::{Entry, MemberId};
use crate::governance::{GovernanceError, MemberHistory, MemberSet};
use crate::merkle::{self, InclusionProof};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// What an auditor needs to check one entry against a chain it has audited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryProof {
    /// The entry itself.
    pub entry: Entry,
    /// Header of the block holding it.
    pub header: BlockHeader,
    /// Merkle path from the entry's leaf to `header.entries_root`.
    pub inclusion: InclusionProof,
    /// Signatures over the header.
    pub signatures: Vec<BlockSignature>,
}

/// Two different blocks at one height, each signed by members: proof that someone equivocated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The contested height.
    pub height: u64,
    /// One header and its signatures.
    pub first: (BlockHeader, Vec<BlockSignature>),
    /// The other header and its signatures.
    pub second: (BlockHeader, Vec<BlockSignature>),
    /// Members whose valid signatures appear on both: the ones who equivocated.
    pub double_signers: Vec<MemberId>,
}

/// An inconsistency the auditor found, with the evidence that shows it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The chain starts from another genesis than the one the auditor trusts.
    #[error("genesis hash is {found}, expected {expected}")]
    GenesisMismatch {
        /// Trusted genesis hash.
        expected: Hash32,
        /// Genesis hash served.
        found: Hash32,
    },
    /// Block 0 is not a well-formed genesis block.
    #[error("block 0 is not a genesis block: {reason}")]
    BadGenesis {
        /// What is wrong.
        reason: String,
    },
    /// A genesis entry outside block 0.
    #[error("block {height} holds a genesis entry")]
    LateGenesis {
        /// The block.
        height: u64,
    },
    /// Blocks are missing or out of order.
    #[error("expected block {expected}, got block {found}")]
    HeightGap {
        /// Next height expected.
        expected: u64,
        /// Height served.
        found: u64,
    },
    /// Unknown block format.
    #[error("block {height} has version {version}")]
    UnknownVersion {
        /// The block.
        height: u64,
        /// Its version.
        version: u32,
    },
    /// A block does not link to its predecessor.
    #[error("block {height} links to {found_previous}, but block {} hashes to {expected_previous}", height - 1)]
    BrokenLink {
        /// The block.
        height: u64,
        /// Hash of the previous header as recomputed.
        expected_previous: Hash32,
        /// Previous hash recorded in the block.
        found_previous: Hash32,
    },
    /// Time went backwards.
    #[error("block {height} has timestamp {found} before its predecessor's {previous}")]
    TimestampRegressed {
        /// The block.
        height: u64,
        /// Predecessor's timestamp.
        previous: u64,
        /// This block's timestamp.
        found: u64,
    },
    /// The header's entry count disagrees with the entries.
    #[error("block {height} records {recorded} entries but holds {actual}")]
    EntryCountMismatch {
        /// The block.
        height: u64,
        /// Count in the header.
        recorded: u32,
        /// Entries present.
        actual: usize,
    },
    /// The entries do not hash to the header's root.
    #[error("block {height}: entries hash to root {computed}, header records {recorded}")]
    MerkleRootMismatch {
        /// The block.
        height: u64,
        /// Root in the header.
        recorded: Hash32,
        /// Root of the entries served.
        computed: Hash32,
    },
    /// An entry anchored twice.
    #[error("entry {entry_hash} appears in block {height} and again in block {again_height}")]
    DuplicateEntry {
        /// The entry.
        entry_hash: Hash32,
        /// First block holding it.
        height: u64,
        /// Later block holding it.
        again_height: u64,
    },
    /// A signature does not verify against the signer's recorded key.
    #[error("block {height}: signature of member {signer} does not verify")]
    BadSignature {
        /// The block.
        height: u64,
        /// Claimed signer.
        signer: MemberId,
        /// The signed header.
        header: Box<BlockHeader>,
        /// The signature served.
        signature: SignatureBytes,
    },
    /// A signature by someone outside the member set at that height.
    #[error("block {height} is signed by {signer}, not a member at that height")]
    NonMemberSignature {
        /// The block.
        height: u64,
        /// The signer.
        signer: MemberId,
        /// Members at that height.
        members: Vec<MemberId>,
    },
    /// Two signatures by one member on one block.
    #[error("block {height} carries two signatures of member {signer}")]
    DuplicateSigner {
        /// The block.
        height: u64,
        /// The signer.
        signer: MemberId,
    },
    /// A block without a majority of signatures, followed by more blocks.
    #[error("block {height} has {have} valid signatures, {need} needed")]
    NotFinal {
        /// The block.
        height: u64,
        /// Valid member signatures.
        have: usize,
        /// Majority of the member set at that height.
        need: usize,
    },
    /// A governance entry that the member set at its height does not authorize.
    #[error("block {height}, entry {index}: governance refused: {reason}")]
    InvalidGovernance {
        /// The block.
        height: u64,
        /// Position of the entry.
        index: usize,
        /// Why.
        reason: GovernanceError,
    },
    /// Two signed blocks at one height.
    #[error("equivocation at height {}: blocks {} and {}", .0.height, .0.first.0.hash(), .0.second.0.hash())]
    Equivocation(Box<Equivocation>),
    /// An entry proof that does not lead to the header's root.
    #[error("entry {entry_hash} is not included under block {height}'s root")]
    NotIncluded {
        /// The entry.
        entry_hash: Hash32,
        /// The block claimed.
        height: u64,
    },
    /// An entry proof for a block the audited chain does not have (or has differently).
    #[error("block {height} in the proof is not the audited chain's block")]
    UnknownBlock {
        /// The block claimed.
        height: u64,
    },
}

impl AuditError {
    /// The height of the block at fault, when the error is about one block.
    pub fn height(&self) -> Option<u64> {
        match self {
            AuditError::GenesisMismatch { .. } | AuditError::BadGenesis { .. } => Some(0),
            AuditError::HeightGap { expected, .. } => Some(*expected),
            AuditError::LateGenesis { height }
            | AuditError::UnknownVersion { height, .. }
            | AuditError::BrokenLink { height, .. }
            | AuditError::TimestampRegressed { height, .. }
            | AuditError::EntryCountMismatch { height, .. }
            | AuditError::MerkleRootMismatch { height, .. }
            | AuditError::BadSignature { height, .. }
            | AuditError::NonMemberSignature { height, .. }
            | AuditError::DuplicateSigner { height, .. }
            | AuditError::NotFinal { height, .. }
            | AuditError::InvalidGovernance { height, .. }
            | AuditError::NotIncluded { height, .. }
            | AuditError::UnknownBlock { height } => Some(*height),
            AuditError::DuplicateEntry { again_height, .. } => Some(*again_height),
            AuditError::Equivocation(evidence) => Some(evidence.height),
        }
    }

    /// The member whose signature is at fault, when the error is about one signature.
    pub fn signer(&self) -> Option<MemberId> {
        match self {
            AuditError::BadSignature { signer, .. }
            | AuditError::NonMemberSignature { signer, .. }
            | AuditError::DuplicateSigner { signer, .. } => Some(*signer),
            _ => None,
        }
    }
}

/// What a successful chain audit established.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditReport {
    /// Hash of the genesis block: the chain's identity.
    pub genesis_hash: Hash32,
    /// Height of the last block checked.
    pub head_height: u64,
    /// Hash of the last block checked.
    pub head_hash: Hash32,
    /// Entries checked, genesis included.
    pub entries: u64,
    /// Heights at the tail still short of a majority of signatures (not yet final).
    pub pending_tail: Vec<u64>,
    /// Member sets by height, as derived from the chain.
    pub members: MemberHistory,
    /// Header hash of every block, by height; lets entry proofs be matched to the audited chain.
    pub header_hashes: Vec<Hash32>,
}

/// The short form of a report that the CLI prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditSummary {
    /// Hash of the genesis block.
    pub genesis_hash: Hash32,
    /// Height of the last block checked.
    pub head_height: u64,
    /// Its hash.
    pub head_hash: Hash32,
    /// Entries checked.
    pub entries: u64,
    /// Trailing heights not yet final.
    pub pending_tail: Vec<u64>,
    /// Members in force after the head.
    pub members_at_head: Vec<MemberId>,
}

impl AuditSummary {
    /// Summarizes `report`.
    pub fn of(report: &AuditReport) -> AuditSummary {
        AuditSummary {
            genesis_hash: report.genesis_hash,
            head_height: report.head_height,
            head_hash: report.head_hash,
            entries: report.entries,
            pending_tail: report.pending_tail.clone(),
            members_at_head: report
                .members
                .latest()
                .map(|set| set.members.keys().copied().collect())
                .unwrap_or_default(),
        }
    }
}

/// Checks blocks in order from genesis, carrying the member set forward.
pub struct Auditor {
    trusted_genesis: Option<Hash32>,
    chain_id: Option<Hash32>,
    history: MemberHistory,
    previous: Option<BlockHeader>,
    header_hashes: Vec<Hash32>,
    entry_heights: HashMap<Hash32, u64>,
    pending: Vec<(u64, usize, usize)>,
    final_blocks_in_order: bool,
}

impl Auditor {
    /// An auditor that trusts `trusted_genesis` when given, or else whatever genesis comes first.
    pub fn new(trusted_genesis: Option<Hash32>) -> Auditor {
        Auditor {
            trusted_genesis,
            chain_id: None,
            history: MemberHistory::default(),
            previous: None,
            header_hashes: Vec::new(),
            entry_heights: HashMap::new(),
            pending: Vec::new(),
            final_blocks_in_order: true,
        }
    }

    /// An auditor for a validator's own stored chain (checked at every start): everything
    /// [`Auditor::new`] checks except that blocks become final in order, because a validator may
    /// hold a later block's signatures before an earlier one's, which is a matter of timing, not
    /// of the file's integrity.
    pub fn for_stored_chain(chain_id: Hash32) -> Auditor {
        Auditor {
            final_blocks_in_order: false,
            ..Auditor::new(Some(chain_id))
        }
    }

    /// Checks the next block.
    pub fn push(&mut self, signed: &SignedBlock) -> Result<(), AuditError> {
        let header = &signed.block.header;
        let height = header.height;
        let expected = self.header_hashes.len() as u64;
        if height != expected {
            return Err(AuditError::HeightGap {
                expected,
                found: height,
            });
        }
        if header.version != BLOCK_VERSION {
            return Err(AuditError::UnknownVersion {
                height,
                version: header.version,
            });
        }
        let hash = header.hash();
        match &self.previous {
            None => self.check_genesis(signed, &hash)?,
            Some(previous) => {
                let expected_previous = previous.hash();
                if header.previous_hash != expected_previous {
                    return Err(AuditError::BrokenLink {
                        height,
                        expected_previous,
                        found_previous: header.previous_hash,
                    });
                }
                if header.timestamp_ms < previous.timestamp_ms {
                    return Err(AuditError::TimestampRegressed {
                        height,
                        previous: previous.timestamp_ms,
                        found: header.timestamp_ms,
                    });
                }
            }
        }
        let leaves = self.check_entries(signed)?;
        let computed = merkle::root(&leaves);
        if computed != header.entries_root {
            return Err(AuditError::MerkleRootMismatch {
                height,
                recorded: header.entries_root,
                computed,
            });
        }
        let members = self
            .history
            .at(height)
            .cloned()
            .ok_or(AuditError::BadGenesis {
                reason: "no member set".into(),
            })?;
        let have = check_signatures(height, &hash, header, &signed.signatures, &members)?;
        let need = members.finality_threshold();
        if have < need {
            self.pending.push((height, have, need));
        } else if let Some(&(pending_height, have, need)) =
            self.pending.first().filter(|_| self.final_blocks_in_order)
        {
            return Err(AuditError::NotFinal {
                height: pending_height,
                have,
                need,
            });
        }
        self.apply_governance(signed, &members)?;
        for leaf in leaves {
            if let Some(&first) = self.entry_heights.get(&leaf) {
                return Err(AuditError::DuplicateEntry {
                    entry_hash: leaf,
                    height: first,
                    again_height: height,
                });
            }
            self.entry_heights.insert(leaf, height);
        }
        self.header_hashes.push(hash);
        self.previous = Some(header.clone());
        Ok(())
    }

    fn check_genesis(&mut self, signed: &SignedBlock, hash: &Hash32) -> Result<(), AuditError> {
        if let Some(expected) = self.trusted_genesis {
            if expected != *hash {
                return Err(AuditError::GenesisMismatch {
                    expected,
                    found: *hash,
                });
            }
        }
        let header = &signed.block.header;
        if header.previous_hash != Hash32::ZERO {
            return Err(AuditError::BadGenesis {
                reason: "previous hash is not zero".into(),
            });
        }
        let [Entry::Genesis(spec)] = signed.block.entries.as_slice() else {
            return Err(AuditError::BadGenesis {
                reason: "it must hold exactly one genesis entry".into(),
            });
        };
        let founders = MemberSet::founding(spec).map_err(|error| AuditError::BadGenesis {
            reason: error.to_string(),
        })?;
        self.history = MemberHistory::new(founders);
        self.chain_id = Some(*hash);
        Ok(())
    }

    fn check_entries(&self, signed: &SignedBlock) -> Result<Vec<Hash32>, AuditError> {
        let header = &signed.block.header;
        if header.entry_count as usize != signed.block.entries.len() {
            return Err(AuditError::EntryCountMismatch {
                height: header.height,
                recorded: header.entry_count,
                actual: signed.block.entries.len(),
            });
        }
        if header.height > 0
            && signed
                .block
                .entries
                .iter()
                .any(|entry| matches!(entry, Entry::Genesis(_)))
        {
            return Err(AuditError::LateGenesis {
                height: header.height,
            });
        }
        Ok(signed.block.leaves())
    }

    fn apply_governance(
        &mut self,
        signed: &SignedBlock,
        members: &MemberSet,
    ) -> Result<(), AuditError> {
        let height = signed.block.header.height;
        let chain_id = self.chain_id.unwrap_or(Hash32::ZERO);
        let mut working = members.clone();
        let mut changed = false;
        for (index, entry) in signed.block.entries.iter().enumerate() {
            if let Entry::Governance(governance) = entry {
                working = working.apply(&chain_id, governance).map_err(|reason| {
                    AuditError::InvalidGovernance {
                        height,
                        index,
                        reason,
                    }
                })?;
                changed = true;
            }
        }
        if changed {
            self.history.record(height + 1, working);
        }
        Ok(())
    }

    /// The member set derived so far for `height`.
    pub fn members_at(&self, height: u64) -> Option<&MemberSet> {
        self.history.at(height)
    }

    /// Ends the audit.
    pub fn finish(self) -> Result<AuditReport, AuditError> {
        let (Some(genesis_hash), Some(head)) = (self.chain_id, self.previous) else {
            return Err(AuditError::BadGenesis {
                reason: "the chain is empty".into(),
            });
        };
        Ok(AuditReport {
            genesis_hash,
            head_height: head.height,
            head_hash: head.hash(),
            entries: self.entry_heights.len() as u64,
            pending_tail: self.pending.iter().map(|(height, _, _)| *height).collect(),
            members: self.history,
            header_hashes: self.header_hashes,
        })
    }
}

/// Counts valid member signatures on a block, failing on any signature that is not one.
fn check_signatures(
    height: u64,
    hash: &Hash32,
    header: &BlockHeader,
    signatures: &[BlockSignature],
    members: &MemberSet,
) -> Result<usize, AuditError> {
    let mut signers = BTreeSet::new();
    for signature in signatures {
        if !members.contains(signature.signer) {
            return Err(AuditError::NonMemberSignature {
                height,
                signer: signature.signer,
                members: members.members.keys().copied().collect(),
            });
        }
        if !signers.insert(signature.signer) {
            return Err(AuditError::DuplicateSigner {
                height,
                signer: signature.signer,
            });
        }
        if !members.verifies_block_signature(hash, signature) {
            return Err(AuditError::BadSignature {
                height,
                signer: signature.signer,
                header: Box::new(header.clone()),
                signature: signature.signature,
            });
        }
    }
    Ok(signers.len())
}

/// Audits a whole chain given in order from genesis.
pub fn audit_chain<'a>(
    blocks: impl IntoIterator<Item = &'a SignedBlock>,
    trusted_genesis: Option<Hash32>,
) -> Result<AuditReport, AuditError> {
    let mut auditor = Auditor::new(trusted_genesis);
    for block in blocks {
        auditor.push(block)?;
    }
    auditor.finish()
}

/// Checks that the proof's entry is in the audited chain's block at the proof's height, and that
/// the block is final.
pub fn verify_entry(proof: &EntryProof, report: &AuditReport) -> Result<(), AuditError> {
    let height = proof.header.height;
    let hash = proof.header.hash();
    if report.header_hashes.get(height as usize) != Some(&hash) {
        return Err(AuditError::UnknownBlock { height });
    }
    let entry_hash = proof.entry.hash();
    if proof.inclusion.tree_size != u64::from(proof.header.entry_count)
        || !proof
            .inclusion
            .verify(&entry_hash, &proof.header.entries_root)
    {
        return Err(AuditError::NotIncluded { entry_hash, height });
    }
    let members = report
        .members
        .at(height)
        .ok_or(AuditError::UnknownBlock { height })?;
    let have = check_signatures(height, &hash, &proof.header, &proof.signatures, members)?;
    let need = members.finality_threshold();
    if have < need {
        return Err(AuditError::NotFinal { height, have, need });
    }
    Ok(())
}

/// Compares two blocks claimed for one height: an error carrying the evidence when they differ
/// and both carry valid member signatures.
pub fn check_conflict(
    first: &SignedBlock,
    second: &SignedBlock,
    members: &MemberSet,
) -> Result<(), AuditError> {
    let (a, b) = (&first.block.header, &second.block.header);
    let (hash_a, hash_b) = (a.hash(), b.hash());
    if a.height != b.height || hash_a == hash_b {
        return Ok(());
    }
    let valid_signers = |hash: &Hash32, signatures: &[BlockSignature]| -> BTreeSet<MemberId> {
        signatures
            .iter()
            .filter(|signature| members.verifies_block_signature(hash, signature))
            .map(|signature| signature.signer)
            .collect()
    };
    let signers_a = valid_signers(&hash_a, &first.signatures);
    let signers_b = valid_signers(&hash_b, &second.signatures);
    if signers_a.is_empty() || signers_b.is_empty() {
        return Ok(());
    }
    Err(AuditError::Equivocation(Box::new(Equivocation {
        height: a.height,
        first: (a.clone(), first.signatures.clone()),
        second: (b.clone(), second.signatures.clone()),
        double_signers: signers_a.intersection(&signers_b).copied().collect(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Block, ValidatorKey};
    use crate::entry::{ApprovalPolicy, GenesisSpec, Governance, GovernanceAction, Member};
    use crate::governance::approve;

    struct TestChain {
        keys: Vec<ValidatorKey>,
        blocks: Vec<SignedBlock>,
    }

    impl TestChain {
        fn new() -> TestChain {
            let keys: Vec<ValidatorKey> =
                (1..=4).map(|i| ValidatorKey::from_seed([i; 32])).collect();
            let spec = GenesisSpec {
                chain_name: "audit".into(),
                timestamp_ms: 1,
                approval_policy: ApprovalPolicy::Majority,
                founders: keys[..3]
                    .iter()
                    .enumerate()
                    .map(|(i, k)| Member::for_tests(i as u64 + 1, k))
                    .collect(),
            };
            let mut chain = TestChain {
                keys,
                blocks: Vec::new(),
            };
            chain.push_signed(Block::genesis(&spec), &[1, 2]);
            chain
        }

        fn push_signed(&mut self, block: Block, signers: &[u64]) {
            let signatures = signers
                .iter()
                .map(|&id| self.keys[id as usize - 1].sign_block(id, &block.header))
                .collect();
            self.blocks.push(SignedBlock { block, signatures });
        }

        fn next_block(&self, entries: Vec<Entry>) -> Block {
            let last = &self.blocks.last().unwrap().block.header;
            Block::seal(
                last.height + 1,
                last.hash(),
                last.timestamp_ms + 1,
                1,
                entries,
            )
        }

        fn genesis_hash(&self) -> Hash32 {
            self.blocks[0].block.header.hash()
        }
    }

    fn anchors(seed: u8, count: u8) -> Vec<Entry> {
        (0..count)
            .map(|i| Entry::RecordAnchor {
                leaf: Hash32::digest(&[&[seed, i]]),
            })
            .collect()
    }

    fn audit(chain: &TestChain) -> Result<AuditReport, AuditError> {
        audit_chain(&chain.blocks, Some(chain.genesis_hash()))
    }

    #[test]
    fn an_honest_chain_passes_and_entries_verify() {
        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 5)), &[1, 3]);
        chain.push_signed(chain.next_block(anchors(2, 1)), &[1, 2, 3]);
        let report = audit(&chain).unwrap();
        assert_eq!(report.head_height, 2);
        assert_eq!(report.entries, 7);
        assert!(report.pending_tail.is_empty());
        let block = &chain.blocks[1];
        let proof = EntryProof {
            entry: block.block.entries[3].clone(),
            header: block.block.header.clone(),
            inclusion: merkle::prove(&block.block.leaves(), 3).unwrap(),
            signatures: block.signatures.clone(),
        };
        assert_eq!(verify_entry(&proof, &report), Ok(()));
        let mut moved = proof.clone();
        moved.entry = block.block.entries[2].clone();
        assert!(matches!(
            verify_entry(&moved, &report),
            Err(AuditError::NotIncluded { .. })
        ));
    }

    #[test]
    fn a_flipped_bit_in_an_entry_is_caught() {
        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 5)), &[1, 3]);
        let Entry::RecordAnchor { leaf } = &mut chain.blocks[1].block.entries[2] else {
            unreachable!()
        };
        leaf.0[4] ^= 0x10;
        assert!(matches!(
            audit(&chain),
            Err(AuditError::MerkleRootMismatch { height: 1, .. })
        ));
    }

    #[test]
    fn a_rewritten_header_is_caught_by_its_signatures_or_the_next_link() {
        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 2)), &[1, 3]);
        chain.push_signed(chain.next_block(anchors(2, 2)), &[1, 3]);
        chain.blocks[1].block.header.timestamp_ms += 5;
        assert!(matches!(
            audit(&chain),
            Err(AuditError::BadSignature {
                height: 1,
                signer: 1,
                ..
            })
        ));
        chain.blocks[1].signatures = vec![
            chain.keys[0].sign_block(1, &chain.blocks[1].block.header),
            chain.keys[2].sign_block(3, &chain.blocks[1].block.header),
        ];
        assert!(matches!(
            audit(&chain),
            Err(AuditError::BrokenLink { height: 2, .. })
        ));
    }

    #[test]
    fn forged_non_member_and_minority_signatures_are_caught() {
        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 2)), &[1, 3]);
        chain.blocks[1].signatures[1].signature.0[10] ^= 1;
        assert!(matches!(
            audit(&chain),
            Err(AuditError::BadSignature {
                height: 1,
                signer: 3,
                ..
            })
        ));

        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 2)), &[1, 4]);
        assert!(matches!(
            audit(&chain),
            Err(AuditError::NonMemberSignature {
                height: 1,
                signer: 4,
                ..
            })
        ));

        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 2)), &[1]);
        assert_eq!(audit(&chain).unwrap().pending_tail, vec![1]);
        chain.push_signed(chain.next_block(anchors(2, 2)), &[1, 2]);
        assert!(matches!(
            audit(&chain),
            Err(AuditError::NotFinal {
                height: 1,
                have: 1,
                need: 2
            })
        ));
    }

    #[test]
    fn a_stored_chain_may_hold_a_final_block_after_a_pending_one() {
        let mut chain = TestChain::new();
        chain.push_signed(chain.next_block(anchors(1, 2)), &[1]);
        chain.push_signed(chain.next_block(anchors(2, 2)), &[1, 2]);
        assert!(matches!(
            audit(&chain),
            Err(AuditError::NotFinal { height: 1, .. })
        ));
        let mut stored = Auditor::for_stored_chain(chain.genesis_hash());
        for block in &chain.blocks {
            stored.push(block).unwrap();
        }
        assert_eq!(stored.finish().unwrap().pending_tail, vec![1]);

        chain.blocks[2].signatures[1].signature.0[3] ^= 1;
        let mut stored = Auditor::for_stored_chain(chain.genesis_hash());
        let refusal = chain.blocks.iter().try_for_each(|block| stored.push(block));
        assert!(matches!(
            refusal,
            Err(AuditError::BadSignature {
                height: 2,
                signer: 2,
                ..
            })
        ));
    }

    #[test]
    fn an_admitted_member_signs_from_the_next_block() {
        let mut chain = TestChain::new();
        let action = GovernanceAction::Admit {
            member: Member::for_tests(4, &chain.keys[3]),
            epoch: 0,
        };
        let chain_id = chain.genesis_hash();
        let approvals = vec![
            approve(&chain.keys[0], 1, &chain_id, &action),
            approve(&chain.keys[1], 2, &chain_id, &action),
        ];
        chain.push_signed(
            chain.next_block(vec![Entry::Governance(Governance { action, approvals })]),
            &[1, 2],
        );
        chain.push_signed(chain.next_block(anchors(1, 1)), &[1, 2, 4]);
        let report = audit(&chain).unwrap();
        assert!(report.members.at(2).unwrap().contains(4));
        assert!(!report.members.at(1).unwrap().contains(4));
    }

    #[test]
    fn under_approved_governance_is_caught() {
        let mut chain = TestChain::new();
        let action = GovernanceAction::Admit {
            member: Member::for_tests(4, &chain.keys[3]),
            epoch: 0,
        };
        let approvals = vec![approve(&chain.keys[0], 1, &chain.genesis_hash(), &action)];
        chain.push_signed(
            chain.next_block(vec![Entry::Governance(Governance { action, approvals })]),
            &[1, 2],
        );
        assert!(matches!(
            audit(&chain),
            Err(AuditError::InvalidGovernance {
                height: 1,
                index: 0,
                ..
            })
        ));
    }

    #[test]
    fn an_equivocating_pair_is_caught_with_the_double_signers() {
        let mut chain = TestChain::new();
        let honest = chain.next_block(anchors(1, 2));
        let rival = chain.next_block(anchors(9, 2));
        chain.push_signed(honest, &[1, 2]);
        let rival_signatures = [2u64, 3]
            .iter()
            .map(|&id| chain.keys[id as usize - 1].sign_block(id, &rival.header))
            .collect();
        let rival = SignedBlock {
            block: rival,
            signatures: rival_signatures,
        };
        let members = audit(&chain).unwrap().members.at(1).unwrap().clone();
        let Err(AuditError::Equivocation(evidence)) =
            check_conflict(&chain.blocks[1], &rival, &members)
        else {
            panic!("equivocation not caught");
        };
        assert_eq!(evidence.double_signers, vec![2]);
        assert_eq!(
            check_conflict(&chain.blocks[1], &chain.blocks[1], &members),
            Ok(())
        );
    }
}
