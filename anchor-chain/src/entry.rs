//! What the chain records: members, the genesis spec, governance actions and the typed entries,
//! as plain data with their JSON form. Their canonical bytes, and so an entry's hash, are in
//! `codec`, which depends on this module and not the other way round.

use crate::bytes::{Hash32, PublicKeyBytes, SignatureBytes};
use serde::{Deserialize, Serialize};

/// Identifier of a member organization; also its node id in the consensus group.
pub type MemberId = u64;

/// A member organization (a hospital) as the chain records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable identifier; doubles as the validator's consensus node id.
    pub id: MemberId,
    /// Human-readable organization name.
    pub name: String,
    /// The validator's Ed25519 public key: block signatures and approvals verify against it.
    pub public_key: PublicKeyBytes,
    /// `host:port` of the validator's HTTP API, where its peers replicate to it.
    pub address: String,
}

/// How many current members must sign a governance action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPolicy {
    /// More than half of the current members.
    #[default]
    Majority,
    /// Every current member.
    All,
}

/// What the genesis block records: the founding members and the rules they agreed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisSpec {
    /// Name of the consortium; distinguishes chains that share members.
    pub chain_name: String,
    /// Time of founding, in milliseconds since the Unix epoch; the genesis block's timestamp.
    pub timestamp_ms: u64,
    /// Approvals needed to admit or remove a member.
    pub approval_policy: ApprovalPolicy,
    /// The founding members; ids must be distinct.
    pub founders: Vec<Member>,
}

/// A change to the member set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum GovernanceAction {
    /// Admit a new organization.
    Admit {
        /// The organization joining.
        member: Member,
        /// The member-set epoch this action applies to; stops an old approval being replayed.
        epoch: u64,
    },
    /// Remove a current member.
    Remove {
        /// The member leaving.
        member_id: MemberId,
        /// The member-set epoch this action applies to.
        epoch: u64,
    },
}

/// One current member's signature approving a governance action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approving member.
    pub approver: MemberId,
    /// Ed25519 signature over [`crate::governance::approval_message`].
    pub signature: SignatureBytes,
}

/// A governance entry: an action and the approvals that authorize it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// The change.
    pub action: GovernanceAction,
    /// Signatures of current members.
    pub approvals: Vec<Approval>,
}

/// Something anchored on the chain. Only hashes and roots: never health data (decision 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A record version's leaf (decision 3), computed by the server over its ciphertext.
    RecordAnchor {
        /// The record-version leaf hash.
        leaf: Hash32,
    },
    /// A hospital's consent tree's root after a change (decision 4).
    ConsentRoot {
        /// Whose tree: the hospital's id in the vault, so that roots of different hospitals'
        /// trees are never confused.
        hospital: String,
        /// The root as the 32 bytes of a BN254 scalar.
        root: Hash32,
        /// Monotonic version of the consent tree, so an old root anchored again stays distinct.
        sequence: u64,
    },
    /// The hash of an export's manifest (decision 7).
    ExportManifest {
        /// SHA3-256 of the manifest.
        manifest_hash: Hash32,
    },
    /// The Merkle root over a batch of access-log lines.
    AccessLogBatch {
        /// Root of the batch.
        root: Hash32,
        /// Number of log lines under the root.
        count: u64,
    },
    /// The hash of a Groth16 verifying key in use.
    VerifyingKey {
        /// SHA3-256 of the serialized key.
        key_hash: Hash32,
        /// Which circuit the key belongs to.
        label: String,
    },
    /// A member-set change.
    Governance(Governance),
    /// The founding record; only valid as the single entry of block 0.
    Genesis(GenesisSpec),
}

/// Longest string accepted in an entry, in bytes: names and labels, not documents.
pub const MAX_TEXT_LEN: usize = 256;

impl Entry {
    /// Checks what can be checked without the chain: lengths and that genesis is not submitted.
    pub fn check_shape(&self) -> Result<(), String> {
        let check_text = |what: &str, text: &str| {
            if text.is_empty() || text.len() > MAX_TEXT_LEN {
                Err(format!("{what} must be 1 to {MAX_TEXT_LEN} bytes"))
            } else {
                Ok(())
            }
        };
        match self {
            Entry::VerifyingKey { label, .. } => check_text("label", label),
            Entry::ConsentRoot { hospital, .. } => check_text("hospital", hospital),
            Entry::Governance(governance) => {
                if governance.approvals.is_empty() {
                    return Err("a governance entry needs approvals".into());
                }
                if let GovernanceAction::Admit { member, .. } = &governance.action {
                    check_text("member name", &member.name)?;
                    check_text("member address", &member.address)?;
                }
                Ok(())
            }
            Entry::Genesis(_) => Err("genesis entries cannot be submitted".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_a_tagged_json_form() {
        let json = r#"{"type":"record_anchor","leaf":"00000000000000000000000000000000000000000000000000000000000000ff"}"#;
        let entry: Entry = serde_json::from_str(json).unwrap();
        assert!(matches!(entry, Entry::RecordAnchor { leaf } if leaf.0[31] == 0xff));
    }
}
