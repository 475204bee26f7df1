//! The proving key: trusted only if its bytes hash to what `consentKeys` advertises, whether
//! they were just downloaded or read from the cache. A key the server swapped would make proofs
//! that do not verify (or, worse, were made for another circuit), so the hash is checked every
//! time, before the bytes are decoded.
//!
//! Blocking: hashing, decoding and the cache files run on a blocking thread, called from
//! [`crate::MedvaultClient::proving_key`].

use crate::error::ClientError;
use medvault_circuits::ConsentProvingKey;
use sha3::{Digest, Sha3_256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Length of a SHA3-256 digest in hex.
const HASH_HEX_DIGITS: usize = 64;

/// A proving key hash as the contract spells it: 64 lowercase hex digits. Checked before it is
/// used in a file name, so that the server cannot name a path outside the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyHash(String);

impl KeyHash {
    pub(crate) fn parse(text: &str) -> Result<Self, ClientError> {
        let digits = text.len() == HASH_HEX_DIGITS
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !digits {
            return Err(ClientError::Malformed(format!(
                "consentKeys.provingKeyHash: {text:?} is not {HASH_HEX_DIGITS} lowercase hex digits"
            )));
        }
        Ok(KeyHash(text.to_owned()))
    }

    /// The key's file in `cache_dir`, named by its hash so that a new key never reads an old one.
    pub(crate) fn cache_path(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(format!("consent-proving-key-{}.bin", self.0))
    }
}

/// SHA3-256 of `bytes`, lowercase hex.
fn sha3_hex(bytes: &[u8]) -> String {
    hex::encode(Sha3_256::digest(bytes))
}

/// Decodes `bytes` as a proving key if they hash to `expected`.
pub(crate) fn check_proving_key(
    bytes: &[u8],
    expected: &KeyHash,
) -> Result<ConsentProvingKey, ClientError> {
    let actual = sha3_hex(bytes);
    if actual != expected.0 {
        return Err(ClientError::ProvingKeyHash {
            expected: expected.0.clone(),
            actual,
        });
    }
    Ok(ConsentProvingKey::from_bytes(bytes)?)
}

/// The cached key, if `path` holds one with the expected hash. A missing file, or one whose
/// bytes hash to something else (tampered with or damaged), is no key: the caller downloads it
/// again and replaces the file.
pub(crate) fn read_cached(
    path: &Path,
    expected: &KeyHash,
) -> Result<Option<ConsentProvingKey>, ClientError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ClientError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    match check_proving_key(&bytes, expected) {
        Ok(key) => Ok(Some(key)),
        Err(ClientError::ProvingKeyHash { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes a checked key's bytes to `path`, through a temporary file renamed into place, so that
/// the cache never holds part of a key under a key's name (and a reader never sees one).
pub(crate) fn write_cache(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ClientError::Io { path, source }
    };
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory).map_err(io_error(directory))?;
    }
    let staging = path.with_extension(format!("partial-{}", std::process::id()));
    let written = std::fs::File::create(&staging)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&staging, path));
    if let Err(source) = written {
        // Best effort: the staging file holds nothing anyone trusts, and the error is reported.
        let _ = std::fs::remove_file(&staging);
        return Err(io_error(path)(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key_bytes() -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let (proving_key, _) = medvault_circuits::setup(1, &mut rng).unwrap();
        proving_key.to_bytes()
    }

    #[test]
    fn a_key_whose_bytes_do_not_hash_to_the_advertised_hash_is_refused() {
        let bytes = key_bytes();
        let advertised = KeyHash::parse(&sha3_hex(&bytes)).unwrap();
        assert_eq!(check_proving_key(&bytes, &advertised).unwrap().depth(), 1);

        let mut swapped = bytes.clone();
        let last = swapped.len() - 1;
        swapped[last] ^= 1;
        match check_proving_key(&swapped, &advertised) {
            Err(ClientError::ProvingKeyHash { expected, actual }) => {
                assert_eq!(expected, sha3_hex(&bytes));
                assert_eq!(actual, sha3_hex(&swapped));
            }
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_hash_that_is_not_64_lowercase_hex_digits_is_malformed() {
        let upper = "A".repeat(HASH_HEX_DIGITS);
        let traversal = format!("../{}", "0".repeat(HASH_HEX_DIGITS - 3));
        for text in ["", "00", upper.as_str(), traversal.as_str()] {
            assert!(
                matches!(KeyHash::parse(text), Err(ClientError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_cache_is_trusted_only_while_its_bytes_hash_to_the_advertised_hash() {
        let directory = tempfile::tempdir().unwrap();
        let bytes = key_bytes();
        let hash = KeyHash::parse(&sha3_hex(&bytes)).unwrap();
        let path = hash.cache_path(&directory.path().join("keys"));
        assert!(read_cached(&path, &hash).unwrap().is_none());

        write_cache(&path, &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(read_cached(&path, &hash).unwrap().is_some());

        let mut damaged = bytes.clone();
        damaged[10] ^= 0x80;
        std::fs::write(&path, &damaged).unwrap();
        assert!(read_cached(&path, &hash).unwrap().is_none());

        // Replacing a damaged file leaves only the key behind, no staging file.
        write_cache(&path, &bytes).unwrap();
        assert!(read_cached(&path, &hash).unwrap().is_some());
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
