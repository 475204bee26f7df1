//! Blocks: a header that commits to its entries through a Merkle root and to its predecessor
//! through its hash, and the validators' Ed25519 signatures over the header hash.

use crate::bytes::{Hash32, PublicKeyBytes, SignatureBytes};
use crate::codec::Encoder;
use crate::entry::{Entry, GenesisSpec, MemberId};
use crate::merkle;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the block format this crate writes and checks.
pub const BLOCK_VERSION: u32 = 1;

/// Domain tag of a block signature, so it can never be mistaken for an approval.
const BLOCK_SIGNATURE_TAG: &[u8] = b"medvault-anchor-chain/block-signature/v1";
const HEADER_HASH_TAG: &[u8] = b"medvault-anchor-chain/header/v1";

/// What a block commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Format version, [`BLOCK_VERSION`].
    pub version: u32,
    /// Position in the chain; genesis is 0.
    pub height: u64,
    /// Hash of the previous block's header; zero for genesis.
    pub previous_hash: Hash32,
    /// Proposer's clock in milliseconds since the Unix epoch, never earlier than the previous
    /// block's.
    pub timestamp_ms: u64,
    /// Merkle root over the entries' canonical bytes.
    pub entries_root: Hash32,
    /// Number of entries.
    pub entry_count: u32,
    /// Member whose validator proposed the block.
    pub proposer: MemberId,
}

impl BlockHeader {
    /// Canonical bytes of the header.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Encoder::default();
        out.u32(self.version);
        out.u64(self.height);
        out.bytes(&self.previous_hash.0);
        out.u64(self.timestamp_ms);
        out.bytes(&self.entries_root.0);
        out.u32(self.entry_count);
        out.u64(self.proposer);
        out.finish()
    }

    /// The block's identity: what the next block links to and what validators sign.
    pub fn hash(&self) -> Hash32 {
        Hash32::digest(&[HEADER_HASH_TAG, &self.canonical_bytes()])
    }
}

/// A header with its entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The entries, in Merkle-leaf order.
    #[serde(with = "crate::codec::entry_list_serde")]
    pub entries: Vec<Entry>,
}

impl Block {
    /// Block 0: the genesis spec as its single entry, signed later by the founders.
    pub fn genesis(spec: &GenesisSpec) -> Block {
        Block::seal(
            0,
            Hash32::ZERO,
            spec.timestamp_ms,
            0,
            vec![Entry::Genesis(spec.clone())],
        )
    }

    /// Builds a block over `entries`, computing their Merkle root.
    pub fn seal(
        height: u64,
        previous_hash: Hash32,
        timestamp_ms: u64,
        proposer: MemberId,
        entries: Vec<Entry>,
    ) -> Block {
        let leaves: Vec<Hash32> = entries.iter().map(Entry::hash).collect();
        Block {
            header: BlockHeader {
                version: BLOCK_VERSION,
                height,
                previous_hash,
                timestamp_ms,
                entries_root: merkle::root(&leaves),
                entry_count: entries.len() as u32,
                proposer,
            },
            entries,
        }
    }

    /// Leaf hashes of the entries, in order.
    pub fn leaves(&self) -> Vec<Hash32> {
        self.entries.iter().map(Entry::hash).collect()
    }
}

/// One validator's signature over a block header hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSignature {
    /// The signing member.
    pub signer: MemberId,
    /// Ed25519 signature over [`block_signature_message`].
    pub signature: SignatureBytes,
}

/// A block and the signatures gathered for it so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBlock {
    /// The block.
    pub block: Block,
    /// Signatures of members, at most one per member.
    pub signatures: Vec<BlockSignature>,
}

/// The bytes a validator signs to vouch for a block.
pub fn block_signature_message(header_hash: &Hash32) -> Vec<u8> {
    [BLOCK_SIGNATURE_TAG, &header_hash.0].concat()
}

/// Whether `signature` by `public_key` over `message` is valid; a malformed key is simply invalid.
pub fn verify_signature(
    public_key: &PublicKeyBytes,
    message: &[u8],
    signature: &SignatureBytes,
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&public_key.0) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify(message, &signature).is_ok()
}

/// A validator's Ed25519 signing key.
pub struct ValidatorKey {
    signing: SigningKey,
}

/// Failure to read or write a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not hold a 32-byte hex secret.
    #[error("key file {path} does not hold a hex-encoded 32-byte Ed25519 secret")]
    Malformed {
        /// The key file.
        path: String,
    },
}

impl ValidatorKey {
    /// A fresh random key.
    pub fn generate() -> ValidatorKey {
        ValidatorKey {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key derived from a 32-byte seed (tests and benchmarks).
    pub fn from_seed(seed: [u8; 32]) -> ValidatorKey {
        ValidatorKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public half, as recorded in the member set.
    pub fn public_key(&self) -> PublicKeyBytes {
        PublicKeyBytes(self.signing.verifying_key().to_bytes())
    }

    /// Signs arbitrary bytes.
    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.signing.sign(message).to_bytes())
    }

    /// Signs a block header.
    pub fn sign_block(&self, signer: MemberId, header: &BlockHeader) -> BlockSignature {
        BlockSignature {
            signer,
            signature: self.sign(&block_signature_message(&header.hash())),
        }
    }

    /// Reads a key written by [`ValidatorKey::save`].
    pub fn load(path: &Path) -> Result<ValidatorKey, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let seed = Hash32::from_hex(&text).ok_or_else(|| KeyFileError::Malformed {
            path: path.display().to_string(),
        })?;
        Ok(ValidatorKey::from_seed(seed.0))
    }

    /// Writes the secret as hex, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write;
        let io_error = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_error)?;
        file.write_all(hex::encode(self.signing.to_bytes()).as_bytes())
            .map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }
}

// Beside the key it takes rather than in `entry`, which stays below `block`.
#[cfg(test)]
impl crate::entry::Member {
    /// Member `id` with `key`, named `h<id>` at `127.0.0.1:<id>`: the fixture unit tests share.
    pub(crate) fn for_tests(id: MemberId, key: &ValidatorKey) -> Self {
        Self {
            id,
            name: format!("h{id}"),
            public_key: key.public_key(),
            address: format!("127.0.0.1:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_header() {
        let key = ValidatorKey::from_seed([7; 32]);
        let block = Block::seal(
            1,
            Hash32::ZERO,
            10,
            1,
            vec![Entry::RecordAnchor { leaf: Hash32::ZERO }],
        );
        let signature = key.sign_block(1, &block.header);
        let message = block_signature_message(&block.header.hash());
        assert!(verify_signature(
            &key.public_key(),
            &message,
            &signature.signature
        ));
        let mut other = block.header.clone();
        other.timestamp_ms += 1;
        let other_message = block_signature_message(&other.hash());
        assert!(!verify_signature(
            &key.public_key(),
            &other_message,
            &signature.signature
        ));
    }

    #[test]
    fn keys_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator.key");
        let key = ValidatorKey::generate();
        key.save(&path).unwrap();
        assert_eq!(
            ValidatorKey::load(&path).unwrap().public_key(),
            key.public_key()
        );
    }
}
