//! The one canonical byte encoding that all hashes and signatures are computed over: of entries
//! (and so their identity, [`Entry::hash`]), of governance actions, and the `Encoder` that
//! block headers are written with.
//!
//! The canonical encoding is written by hand (not derived from serde) so that an auditor in any
//! language can reproduce it from this file alone: integers are big-endian, strings and lists are
//! prefixed with their length as a big-endian `u32`, and every enum starts with a one-byte tag.

use crate::bytes::{Hash32, PublicKeyBytes, SignatureBytes};
use crate::entry::{
    Approval, ApprovalPolicy, Entry, GenesisSpec, Governance, GovernanceAction, Member,
    MAX_TEXT_LEN,
};
use crate::merkle;

impl Entry {
    /// The canonical byte encoding that the entry's hash and Merkle leaf commit to.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Encoder::default();
        match self {
            Entry::RecordAnchor { leaf } => {
                out.u8(1);
                out.bytes(&leaf.0);
            }
            Entry::ConsentRoot {
                hospital,
                root,
                sequence,
            } => {
                out.u8(2);
                out.text(hospital);
                out.bytes(&root.0);
                out.u64(*sequence);
            }
            Entry::ExportManifest { manifest_hash } => {
                out.u8(3);
                out.bytes(&manifest_hash.0);
            }
            Entry::AccessLogBatch { root, count } => {
                out.u8(4);
                out.bytes(&root.0);
                out.u64(*count);
            }
            Entry::VerifyingKey { key_hash, label } => {
                out.u8(5);
                out.bytes(&key_hash.0);
                out.text(label);
            }
            Entry::Governance(governance) => {
                out.u8(6);
                encode_action(&mut out, &governance.action);
                out.u32(governance.approvals.len() as u32);
                for approval in &governance.approvals {
                    out.u64(approval.approver);
                    out.bytes(&approval.signature.0);
                }
            }
            Entry::Genesis(spec) => {
                out.u8(7);
                out.text(&spec.chain_name);
                out.u64(spec.timestamp_ms);
                out.u8(match spec.approval_policy {
                    ApprovalPolicy::Majority => 1,
                    ApprovalPolicy::All => 2,
                });
                out.u32(spec.founders.len() as u32);
                for member in &spec.founders {
                    encode_member(&mut out, member);
                }
            }
        }
        out.finish()
    }

    /// The entry's identity: its Merkle leaf hash. Submitting the same entry twice is a no-op.
    pub fn hash(&self) -> Hash32 {
        merkle::leaf_hash(&self.canonical_bytes())
    }
}

impl Entry {
    /// Parses [`Entry::canonical_bytes`]; every byte must be used.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut input = Decoder { rest: bytes };
        let entry = match input.u8()? {
            1 => Entry::RecordAnchor {
                leaf: input.hash()?,
            },
            2 => Entry::ConsentRoot {
                hospital: input.text()?,
                root: input.hash()?,
                sequence: input.u64()?,
            },
            3 => Entry::ExportManifest {
                manifest_hash: input.hash()?,
            },
            4 => Entry::AccessLogBatch {
                root: input.hash()?,
                count: input.u64()?,
            },
            5 => Entry::VerifyingKey {
                key_hash: input.hash()?,
                label: input.text()?,
            },
            6 => {
                let action = decode_action(&mut input)?;
                let count = input.u32()?;
                let mut approvals = Vec::new();
                for _ in 0..count {
                    let approver = input.u64()?;
                    let signature = SignatureBytes(input.array()?);
                    approvals.push(Approval {
                        approver,
                        signature,
                    });
                }
                Entry::Governance(Governance { action, approvals })
            }
            7 => {
                let chain_name = input.text()?;
                let timestamp_ms = input.u64()?;
                let approval_policy = match input.u8()? {
                    1 => ApprovalPolicy::Majority,
                    2 => ApprovalPolicy::All,
                    tag => return Err(DecodeError::UnknownTag(tag)),
                };
                let count = input.u32()?;
                let mut founders = Vec::new();
                for _ in 0..count {
                    founders.push(decode_member(&mut input)?);
                }
                Entry::Genesis(GenesisSpec {
                    chain_name,
                    timestamp_ms,
                    approval_policy,
                    founders,
                })
            }
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        if !input.rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(entry)
    }
}

fn decode_action(input: &mut Decoder<'_>) -> Result<GovernanceAction, DecodeError> {
    match input.u8()? {
        1 => {
            let epoch = input.u64()?;
            Ok(GovernanceAction::Admit {
                epoch,
                member: decode_member(input)?,
            })
        }
        2 => {
            let epoch = input.u64()?;
            Ok(GovernanceAction::Remove {
                epoch,
                member_id: input.u64()?,
            })
        }
        tag => Err(DecodeError::UnknownTag(tag)),
    }
}

fn decode_member(input: &mut Decoder<'_>) -> Result<Member, DecodeError> {
    Ok(Member {
        id: input.u64()?,
        name: input.text()?,
        public_key: PublicKeyBytes(input.array()?),
        address: input.text()?,
    })
}

/// Why canonical bytes do not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end in the middle of a field.
    #[error("truncated entry")]
    Truncated,
    /// An enum tag this version does not know.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A string is not UTF-8 or is too long.
    #[error("malformed text field")]
    BadText,
    /// Bytes left over after the entry.
    #[error("trailing bytes after the entry")]
    TrailingBytes,
}

struct Decoder<'a> {
    rest: &'a [u8],
}

impl Decoder<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], DecodeError> {
        if self.rest.len() < count {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(count);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn hash(&mut self) -> Result<Hash32, DecodeError> {
        Ok(Hash32(self.array()?))
    }
    fn text(&mut self) -> Result<String, DecodeError> {
        let length = self.u32()? as usize;
        if length > MAX_TEXT_LEN {
            return Err(DecodeError::BadText);
        }
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| DecodeError::BadText)
    }
}

/// Serde adapter for lists of entries: the tagged JSON form for people, canonical bytes for
/// binary formats (which cannot represent serde's internally tagged enums).
pub mod entry_list_serde {
    use super::Entry;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes `entries`.
    pub fn serialize<S: Serializer>(entries: &[Entry], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            entries.serialize(serializer)
        } else {
            let encoded: Vec<serde_bytes_buf::Buf> = entries
                .iter()
                .map(|entry| serde_bytes_buf::Buf(entry.canonical_bytes()))
                .collect();
            encoded.serialize(serializer)
        }
    }

    /// Deserializes entries.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Entry>, D::Error> {
        if deserializer.is_human_readable() {
            Vec::<Entry>::deserialize(deserializer)
        } else {
            let encoded = Vec::<serde_bytes_buf::Buf>::deserialize(deserializer)?;
            encoded
                .iter()
                .map(|buf| Entry::from_canonical_bytes(&buf.0).map_err(D::Error::custom))
                .collect()
        }
    }

    mod serde_bytes_buf {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub struct Buf(pub Vec<u8>);

        impl Serialize for Buf {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for Buf {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                crate::bytes::serde_bytes_vec(deserializer).map(Buf)
            }
        }
    }
}

/// Canonical bytes of a governance action: what approvals sign.
pub fn action_bytes(action: &GovernanceAction) -> Vec<u8> {
    let mut out = Encoder::default();
    encode_action(&mut out, action);
    out.finish()
}

fn encode_action(out: &mut Encoder, action: &GovernanceAction) {
    match action {
        GovernanceAction::Admit { member, epoch } => {
            out.u8(1);
            out.u64(*epoch);
            encode_member(out, member);
        }
        GovernanceAction::Remove { member_id, epoch } => {
            out.u8(2);
            out.u64(*epoch);
            out.u64(*member_id);
        }
    }
}

fn encode_member(out: &mut Encoder, member: &Member) {
    out.u64(member.id);
    out.text(&member.name);
    out.bytes(&member.public_key.0);
    out.text(&member.address);
}

/// Builder of canonical encodings.
#[derive(Default)]
pub(crate) struct Encoder {
    buffer: Vec<u8>,
}

impl Encoder {
    pub(crate) fn u8(&mut self, value: u8) {
        self.buffer.push(value);
    }
    pub(crate) fn u32(&mut self, value: u32) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, value: u64) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.buffer.extend_from_slice(value);
    }
    pub(crate) fn text(&mut self, value: &str) {
        self.u32(value.len() as u32);
        self.buffer.extend_from_slice(value.as_bytes());
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_type_round_trips_through_canonical_bytes() {
        let member = Member {
            id: 4,
            name: "St. Olav".into(),
            public_key: PublicKeyBytes([9; 32]),
            address: "127.0.0.1:9".into(),
        };
        let hash = Hash32::digest(&[b"h"]);
        let entries = vec![
            Entry::RecordAnchor { leaf: hash },
            Entry::ConsentRoot {
                hospital: "0191d9c8-52f5-7d3a-8000-000000000001".into(),
                root: hash,
                sequence: 3,
            },
            Entry::ExportManifest {
                manifest_hash: hash,
            },
            Entry::AccessLogBatch {
                root: hash,
                count: 12,
            },
            Entry::VerifyingKey {
                key_hash: hash,
                label: "consent-depth-20".into(),
            },
            Entry::Governance(Governance {
                action: GovernanceAction::Admit {
                    member: member.clone(),
                    epoch: 2,
                },
                approvals: vec![Approval {
                    approver: 1,
                    signature: SignatureBytes([5; 64]),
                }],
            }),
            Entry::Governance(Governance {
                action: GovernanceAction::Remove {
                    member_id: 4,
                    epoch: 3,
                },
                approvals: vec![],
            }),
            Entry::Genesis(GenesisSpec {
                chain_name: "c".into(),
                timestamp_ms: 5,
                approval_policy: ApprovalPolicy::All,
                founders: vec![member],
            }),
        ];
        for entry in &entries {
            let bytes = entry.canonical_bytes();
            assert_eq!(&Entry::from_canonical_bytes(&bytes).unwrap(), entry);
            assert!(Entry::from_canonical_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn different_entry_types_never_share_a_hash() {
        let hash = Hash32::digest(&[b"same"]);
        let anchor = Entry::RecordAnchor { leaf: hash };
        let manifest = Entry::ExportManifest {
            manifest_hash: hash,
        };
        assert_ne!(anchor.hash(), manifest.hash());
    }
}
