//! Fixed-length byte values: SHA3-256 digests, Ed25519 public keys and signatures. Hexadecimal in
//! JSON and on the command line, raw bytes in binary formats.
//!
//! The bottom of the crate: this module depends on nothing else in it, so that the Merkle tree
//! and the entry types can share these values without depending on each other.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Sha3_256};
use std::fmt;

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
pub(crate) fn serde_bytes_vec<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<u8>, D::Error> {
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
}
