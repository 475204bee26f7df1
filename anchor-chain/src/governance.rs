//! The member set as the chain records it: founded by genesis, changed only by governance
//! entries that carry enough approvals of the current members, and derivable at any height by
//! replaying the chain from genesis.

use crate::block::{block_signature_message, verify_signature, BlockSignature, ValidatorKey};
use crate::bytes::Hash32;
use crate::codec::action_bytes;
use crate::entry::{
    Approval, ApprovalPolicy, GenesisSpec, Governance, GovernanceAction, Member, MemberId,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

const APPROVAL_TAG: &[u8] = b"medvault-anchor-chain/governance-approval/v1";

/// Why a governance action or a genesis spec is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GovernanceError {
    /// The action names another epoch than the current one (stale or replayed approvals).
    #[error("action is for member-set epoch {found}, the current epoch is {expected}")]
    EpochMismatch {
        /// The current epoch.
        expected: u64,
        /// The epoch the action names.
        found: u64,
    },
    /// An approval's signer is not a current member.
    #[error("approval by {approver}, who is not a current member")]
    UnknownApprover {
        /// The signer.
        approver: MemberId,
    },
    /// A member approved twice.
    #[error("member {approver} approved more than once")]
    DuplicateApprover {
        /// The signer.
        approver: MemberId,
    },
    /// An approval's signature does not verify.
    #[error("approval by {approver} does not verify")]
    BadApproval {
        /// The signer.
        approver: MemberId,
    },
    /// Fewer valid approvals than the policy needs.
    #[error("{have} approvals, {need} needed")]
    NotEnoughApprovals {
        /// Valid approvals present.
        have: usize,
        /// Approvals needed.
        need: usize,
    },
    /// The admitted organization's id or key is already in use.
    #[error("member id {id} or its public key is already in the member set")]
    AlreadyMember {
        /// The id.
        id: MemberId,
    },
    /// The removed member is not in the set.
    #[error("{id} is not a member")]
    NotMember {
        /// The id.
        id: MemberId,
    },
    /// Removing the last member would leave nobody to sign.
    #[error("the last member cannot be removed")]
    LastMember,
    /// Genesis names no founders, or names one twice.
    #[error("genesis must name at least one founder, each id and key once")]
    BadFounders,
}

/// The members in force at some height, and the rules for changing them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSet {
    /// Members by id.
    pub members: BTreeMap<MemberId, Member>,
    /// Approvals a governance action needs.
    pub policy: ApprovalPolicy,
    /// Number of governance actions applied since genesis; approvals name it.
    pub epoch: u64,
}

impl MemberSet {
    /// The founding set named by genesis.
    pub fn founding(spec: &GenesisSpec) -> Result<MemberSet, GovernanceError> {
        let members: BTreeMap<MemberId, Member> = spec
            .founders
            .iter()
            .map(|member| (member.id, member.clone()))
            .collect();
        let keys: BTreeSet<_> = spec
            .founders
            .iter()
            .map(|member| member.public_key)
            .collect();
        if members.is_empty() || members.len() != spec.founders.len() || keys.len() != members.len()
        {
            return Err(GovernanceError::BadFounders);
        }
        Ok(MemberSet {
            members,
            policy: spec.approval_policy,
            epoch: 0,
        })
    }

    /// Signatures needed for a block to be final: a strict majority.
    pub fn finality_threshold(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Approvals needed for a governance action under the policy.
    pub fn approval_threshold(&self) -> usize {
        match self.policy {
            ApprovalPolicy::Majority => self.members.len() / 2 + 1,
            ApprovalPolicy::All => self.members.len(),
        }
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: MemberId) -> bool {
        self.members.contains_key(&id)
    }

    /// Whether `signature` is a valid member signature over the header with `header_hash`.
    pub fn verifies_block_signature(
        &self,
        header_hash: &Hash32,
        signature: &BlockSignature,
    ) -> bool {
        self.members.get(&signature.signer).is_some_and(|member| {
            verify_signature(
                &member.public_key,
                &block_signature_message(header_hash),
                &signature.signature,
            )
        })
    }

    /// The set after `governance`, if its approvals satisfy this set's policy.
    pub fn apply(
        &self,
        chain_id: &Hash32,
        governance: &Governance,
    ) -> Result<MemberSet, GovernanceError> {
        let epoch = match governance.action {
            GovernanceAction::Admit { epoch, .. } | GovernanceAction::Remove { epoch, .. } => epoch,
        };
        if epoch != self.epoch {
            return Err(GovernanceError::EpochMismatch {
                expected: self.epoch,
                found: epoch,
            });
        }
        let message = approval_message(chain_id, &governance.action);
        let mut approvers = BTreeSet::new();
        for approval in &governance.approvals {
            let member =
                self.members
                    .get(&approval.approver)
                    .ok_or(GovernanceError::UnknownApprover {
                        approver: approval.approver,
                    })?;
            if !approvers.insert(approval.approver) {
                return Err(GovernanceError::DuplicateApprover {
                    approver: approval.approver,
                });
            }
            if !verify_signature(&member.public_key, &message, &approval.signature) {
                return Err(GovernanceError::BadApproval {
                    approver: approval.approver,
                });
            }
        }
        let need = self.approval_threshold();
        if approvers.len() < need {
            return Err(GovernanceError::NotEnoughApprovals {
                have: approvers.len(),
                need,
            });
        }
        let mut next = self.clone();
        next.epoch += 1;
        match &governance.action {
            GovernanceAction::Admit { member, .. } => {
                let key_taken = self
                    .members
                    .values()
                    .any(|m| m.public_key == member.public_key);
                if self.contains(member.id) || key_taken {
                    return Err(GovernanceError::AlreadyMember { id: member.id });
                }
                next.members.insert(member.id, member.clone());
            }
            GovernanceAction::Remove { member_id, .. } => {
                if !self.contains(*member_id) {
                    return Err(GovernanceError::NotMember { id: *member_id });
                }
                if self.members.len() == 1 {
                    return Err(GovernanceError::LastMember);
                }
                next.members.remove(member_id);
            }
        }
        Ok(next)
    }
}

/// The bytes a member signs to approve `action` on the chain whose genesis hash is `chain_id`.
pub fn approval_message(chain_id: &Hash32, action: &GovernanceAction) -> Vec<u8> {
    [APPROVAL_TAG, &chain_id.0, &action_bytes(action)].concat()
}

/// A member's approval of `action`.
pub fn approve(
    key: &ValidatorKey,
    approver: MemberId,
    chain_id: &Hash32,
    action: &GovernanceAction,
) -> Approval {
    Approval {
        approver,
        signature: key.sign(&approval_message(chain_id, action)),
    }
}

/// Member sets over the whole chain: which set is in force at each height.
///
/// Governance entries in block `h` take effect from block `h + 1`: block `h` is still signed by
/// the set that admitted its entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemberHistory {
    /// `(first height in force, set)`, ascending by height.
    changes: Vec<(u64, MemberSet)>,
}

impl MemberHistory {
    /// History starting with the founders, in force from height 0.
    pub fn new(founders: MemberSet) -> MemberHistory {
        MemberHistory {
            changes: vec![(0, founders)],
        }
    }

    /// The set in force at `height`; `None` before genesis is known.
    pub fn at(&self, height: u64) -> Option<&MemberSet> {
        let position = self.changes.partition_point(|(from, _)| *from <= height);
        position.checked_sub(1).map(|index| &self.changes[index].1)
    }

    /// The most recent set (in force for the next block).
    pub fn latest(&self) -> Option<&MemberSet> {
        self.changes.last().map(|(_, set)| set)
    }

    /// Records `set` as in force from `height` on.
    pub fn record(&mut self, height: u64, set: MemberSet) {
        self.changes.retain(|(from, _)| *from < height);
        self.changes.push((height, set));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::PublicKeyBytes;

    fn member(id: MemberId, key: &ValidatorKey) -> Member {
        Member {
            id,
            name: format!("hospital {id}"),
            public_key: key.public_key(),
            address: format!("127.0.0.1:{id}"),
        }
    }

    fn founders(count: u64, policy: ApprovalPolicy) -> (Vec<ValidatorKey>, MemberSet) {
        let keys: Vec<ValidatorKey> = (1..=count)
            .map(|i| ValidatorKey::from_seed([i as u8; 32]))
            .collect();
        let spec = GenesisSpec {
            chain_name: "test".into(),
            timestamp_ms: 0,
            approval_policy: policy,
            founders: keys
                .iter()
                .enumerate()
                .map(|(i, k)| member(i as u64 + 1, k))
                .collect(),
        };
        (keys, MemberSet::founding(&spec).unwrap())
    }

    fn admit_four(keys: &[ValidatorKey], approvers: &[u64]) -> Governance {
        let newcomer = ValidatorKey::from_seed([4; 32]);
        let action = GovernanceAction::Admit {
            member: member(4, &newcomer),
            epoch: 0,
        };
        let approvals = approvers
            .iter()
            .map(|&id| approve(&keys[id as usize - 1], id, &Hash32::ZERO, &action))
            .collect();
        Governance { action, approvals }
    }

    #[test]
    fn admission_needs_a_majority() {
        let (keys, set) = founders(3, ApprovalPolicy::Majority);
        let refused = set.apply(&Hash32::ZERO, &admit_four(&keys, &[1]));
        assert_eq!(
            refused,
            Err(GovernanceError::NotEnoughApprovals { have: 1, need: 2 })
        );
        let admitted = set
            .apply(&Hash32::ZERO, &admit_four(&keys, &[1, 3]))
            .unwrap();
        assert!(admitted.contains(4));
        assert_eq!(admitted.epoch, 1);
        assert_eq!(admitted.finality_threshold(), 3);
    }

    #[test]
    fn the_all_policy_needs_everyone() {
        let (keys, set) = founders(3, ApprovalPolicy::All);
        assert!(set
            .apply(&Hash32::ZERO, &admit_four(&keys, &[1, 2]))
            .is_err());
        assert!(set
            .apply(&Hash32::ZERO, &admit_four(&keys, &[1, 2, 3]))
            .is_ok());
    }

    #[test]
    fn an_approval_cannot_be_replayed_in_a_later_epoch() {
        let (keys, set) = founders(3, ApprovalPolicy::Majority);
        let governance = admit_four(&keys, &[1, 2]);
        let admitted = set.apply(&Hash32::ZERO, &governance).unwrap();
        let removal = GovernanceAction::Remove {
            member_id: 4,
            epoch: 1,
        };
        let approvals = (1..=3)
            .map(|id| approve(&keys[id as usize - 1], id, &Hash32::ZERO, &removal))
            .collect();
        let removed = admitted
            .apply(
                &Hash32::ZERO,
                &Governance {
                    action: removal,
                    approvals,
                },
            )
            .unwrap();
        assert_eq!(
            removed.apply(&Hash32::ZERO, &governance),
            Err(GovernanceError::EpochMismatch {
                expected: 2,
                found: 0
            })
        );
    }

    #[test]
    fn forged_and_outsider_approvals_are_refused() {
        let (keys, set) = founders(3, ApprovalPolicy::Majority);
        let mut governance = admit_four(&keys, &[1, 2]);
        governance.approvals[1].signature.0[0] ^= 1;
        assert_eq!(
            set.apply(&Hash32::ZERO, &governance),
            Err(GovernanceError::BadApproval { approver: 2 })
        );
        let mut governance = admit_four(&keys, &[1, 2]);
        governance.approvals[1].approver = 9;
        assert_eq!(
            set.apply(&Hash32::ZERO, &governance),
            Err(GovernanceError::UnknownApprover { approver: 9 })
        );
    }

    #[test]
    fn history_answers_by_height() {
        let (_, set) = founders(1, ApprovalPolicy::Majority);
        let mut history = MemberHistory::new(set.clone());
        let mut later = set.clone();
        later.members.insert(
            2,
            Member {
                id: 2,
                name: "b".into(),
                public_key: PublicKeyBytes([2; 32]),
                address: "x".into(),
            },
        );
        history.record(5, later.clone());
        assert_eq!(history.at(4), Some(&set));
        assert_eq!(history.at(5), Some(&later));
        assert_eq!(history.at(500), Some(&later));
    }
}
