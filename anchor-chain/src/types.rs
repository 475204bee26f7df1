//! Plain data shared by every module: hashes, signatures, members and the typed chain entries,
//! with the one canonical byte encoding that all hashes and signatures are computed over.
//!
//! The canonical encoding is written by hand (not derived from serde) so that an auditor in any
//! language can reproduce it from this file alone: integers are big-endian, strings and lists are
//! prefixed with their length as a big-endian `u32`, and every enum starts with a one-byte tag.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Sha3_256};
use std::fmt;

/// Identifier of a member organization; also its node id in the consensus group.
pub type MemberId = u64;

macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Lower-case hexadecimal form, as used in JSON and on the command line.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses the hexadecimal form; `None` when it is not exactly the right length.
            pub fn from_hex(text: &str) -> Option<Self> {
                let bytes = hex::decode(text.trim()).ok()?;
                Some(Self(bytes.try_into().ok()?))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error;
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    Self::from_hex(&text).ok_or_else(|| {
                        D::Error::custom(concat!("expected ", stringify!($len), " hex-encoded bytes"))
                    })
                } else {
                    let bytes: Vec<u8> = serde_bytes_vec(deserializer)?;
                    let array: [u8; $len] = bytes
                        .try_into()
                        .map_err(|_| D::Error::custom(concat!("expected ", stringify!($len), " bytes")))?;
                    Ok(Self(array))
                }
            }
        }
    };
}

/// Reads a byte string from a binary deserializer.
fn serde_bytes_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(BytesVisitor)
}

fixed_bytes!(
    /// A SHA3-256 digest.
    Hash32,
    32
);
fixed_bytes!(
    /// An Ed25519 public key.
    PublicKeyBytes,
    32
);
fixed_bytes!(
    /// An Ed25519 signature.
    SignatureBytes,
    64
);

impl Hash32 {
    /// The all-zero hash: the previous-block hash of the genesis block.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// SHA3-256 of the concatenation of `parts`.
    pub fn digest(parts: &[&[u8]]) -> Hash32 {
        let mut hasher = Sha3_256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash32(hasher.finalize().into())
    }
}

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

#[cfg(test)]
impl Member {
    /// Member `id` with `key`, named `h<id>` at `127.0.0.1:<id>`: the fixture unit tests share.
    pub(crate) fn for_tests(id: MemberId, key: &crate::block::ValidatorKey) -> Member {
        Member {
            id,
            name: format!("h{id}"),
            public_key: key.public_key(),
            address: format!("127.0.0.1:{id}"),
        }
    }
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
    /// The consent tree's root after a change (decision 4).
    ConsentRoot {
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
    /// The canonical byte encoding that the entry's hash and Merkle leaf commit to.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Encoder::default();
        match self {
            Entry::RecordAnchor { leaf } => {
                out.u8(1);
                out.bytes(&leaf.0);
            }
            Entry::ConsentRoot { root, sequence } => {
                out.u8(2);
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
        crate::merkle::leaf_hash(&self.canonical_bytes())
    }

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

impl Entry {
    /// Parses [`Entry::canonical_bytes`]; every byte must be used.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut input = Decoder { rest: bytes };
        let entry = match input.u8()? {
            1 => Entry::RecordAnchor {
                leaf: input.hash()?,
            },
            2 => Entry::ConsentRoot {
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
                super::super::serde_bytes_vec(deserializer).map(Buf)
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
    fn hashes_round_trip_through_json_as_hex() {
        let hash = Hash32::digest(&[b"abc"]);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", hash.to_hex()));
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), hash);
    }

    #[test]
    fn hashes_round_trip_through_bincode_as_bytes() {
        let hash = Hash32::digest(&[b"x"]);
        let bytes = bincode::serialize(&hash).unwrap();
        assert_eq!(bytes.len(), 8 + 32);
        assert_eq!(bincode::deserialize::<Hash32>(&bytes).unwrap(), hash);
    }

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

    #[test]
    fn entries_have_a_tagged_json_form() {
        let json = r#"{"type":"record_anchor","leaf":"00000000000000000000000000000000000000000000000000000000000000ff"}"#;
        let entry: Entry = serde_json::from_str(json).unwrap();
        assert!(matches!(entry, Entry::RecordAnchor { leaf } if leaf.0[31] == 0xff));
    }
}
