//! The export manifest: what was exported under which policy, what anonymity was achieved, the
//! SHA3-256 of every file, the consent root and chain height it was taken at, and the exporting
//! organization's Ed25519 signature. Its own SHA3-256 is what the chain anchors.

use crate::error::ExportError;
use crate::policy::ExportPolicy;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use std::io::{Read, Write};
use std::path::Path;

/// The manifest's file name inside an export directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Who exports, and the evidence the export is tied to.
pub struct ExportContext {
    /// The exporting organization's name.
    pub organization: String,
    /// The organization's signing key.
    pub signing_key: SigningKey,
    /// The organization's secret for per-recipient pseudonym keys.
    pub pseudonym_secret: [u8; 32],
    /// The consent tree root the consents were read at, hex.
    pub consent_root: String,
    /// The chain height at export time.
    pub chain_height: u64,
    /// The export's reference time (ages are computed at this date).
    pub as_of: DateTime<Utc>,
}

/// One exported file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileDigest {
    /// The file name within the export directory.
    pub name: String,
    /// Rows it holds.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// SHA3-256 of its bytes, hex.
    pub sha3_256: String,
}

/// The manifest of one export.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `medvault-export/v1`.
    pub format: String,
    /// A random id.
    pub export_id: String,
    /// When the export was made.
    pub created_at: DateTime<Utc>,
    /// Who made it.
    pub organization: String,
    /// The policy it follows.
    pub policy: ExportPolicy,
    /// Persons given.
    pub persons_in: u64,
    /// Persons exported.
    pub persons_out: u64,
    /// Persons suppressed for k and l.
    pub persons_suppressed: u64,
    /// Events of the data set given.
    pub events_in: u64,
    /// Events exported.
    pub events_out: u64,
    /// The smallest equivalence class exported.
    pub k_achieved: u64,
    /// The fewest distinct sensitive values in an exported class, if l was required.
    pub l_achieved: Option<u64>,
    /// Every data file.
    pub files: Vec<FileDigest>,
    /// The consent root, hex.
    pub consent_root: String,
    /// The chain height.
    pub chain_height: u64,
    /// The signer's Ed25519 public key, hex.
    pub signer_public_key: String,
    /// Ed25519 signature over the manifest with this field empty, hex.
    pub signature: String,
}

impl Manifest {
    fn signed_bytes(&self) -> Result<Vec<u8>, ExportError> {
        let unsigned = Manifest {
            signature: String::new(),
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).map_err(|error| ExportError::Tampered(error.to_string()))
    }

    /// Signs the manifest with the organization's key.
    pub(crate) fn sign(&mut self, key: &SigningKey) -> Result<(), ExportError> {
        self.signer_public_key = hex::encode(key.verifying_key().as_bytes());
        self.signature = hex::encode(key.sign(&self.signed_bytes()?).to_bytes());
        Ok(())
    }

    fn check_signature(&self) -> Result<(), ExportError> {
        let bad = |what: &str| ExportError::Tampered(format!("manifest signature: {what}"));
        let key_bytes: [u8; 32] = hex::decode(&self.signer_public_key)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("malformed public key"))?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("invalid public key"))?;
        let signature_bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("malformed signature"))?;
        key.verify(
            &self.signed_bytes()?,
            &Signature::from_bytes(&signature_bytes),
        )
        .map_err(|_| bad("does not match"))
    }
}

/// SHA3-256 of a file, read in chunks.
pub(crate) fn file_digest(path: &Path) -> Result<(u64, String), ExportError> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha3_256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// A writer that hashes and counts the bytes it passes on, so that a file's digest is known as
/// soon as it is written, without reading the file back: the same digest [`file_digest`] gives.
pub(crate) struct DigestWriter<W> {
    inner: W,
    hasher: Sha3_256,
    bytes: u64,
}

impl<W: Write> DigestWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha3_256::new(),
            bytes: 0,
        }
    }

    /// Flushes, and returns the size and SHA3-256 (hex) of everything written.
    pub(crate) fn finish(mut self) -> Result<(u64, String), ExportError> {
        self.inner.flush()?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA3-256 of the manifest file as written: the hash anchored on the chain.
pub fn manifest_hash(dir: &Path) -> Result<String, ExportError> {
    Ok(file_digest(&dir.join(MANIFEST_FILE))?.1)
}

/// Re-hashes every file of an export and checks them and the signature against its manifest,
/// trusting nothing but the bytes in `dir`. Returns the manifest when all of it holds.
pub fn verify_export(dir: &Path) -> Result<Manifest, ExportError> {
    let text = std::fs::read(dir.join(MANIFEST_FILE))
        .map_err(|error| ExportError::Tampered(format!("cannot read {MANIFEST_FILE}: {error}")))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|error| ExportError::Tampered(format!("{MANIFEST_FILE}: {error}")))?;
    manifest.check_signature()?;
    for file in &manifest.files {
        if file.name.contains('/') || file.name.starts_with('.') {
            return Err(ExportError::Tampered(format!(
                "file name {:?} leaves the export",
                file.name
            )));
        }
        let (bytes, digest) = file_digest(&dir.join(&file.name))
            .map_err(|error| ExportError::Tampered(format!("{}: {error}", file.name)))?;
        if bytes != file.bytes || digest != file.sha3_256 {
            return Err(ExportError::Tampered(format!(
                "{} does not match its SHA3-256 in the manifest",
                file.name
            )));
        }
    }
    Ok(manifest)
}
