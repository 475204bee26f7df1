//! Encryption at rest (MISSION.md decisions 1 and 2).
//!
//! Three layers of keys, so that erasing is cheap and exact:
//! - the master key (a 0600 key file) wraps each patient's data key;
//! - a patient's data key seals their profile versions and wraps one content key per record
//!   version;
//! - a content key seals one record version. Deleting it crypto-shreds exactly that version.
//!
//! Every ciphertext is XChaCha20-Poly1305 with a random 192-bit nonce, and its associated data is
//! a [`Binding`]: the ids and version it belongs to. A ciphertext copied to another row fails to
//! open.

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use medvault_circuits::field::{field_from_bytes, FIELD_BYTES};
use medvault_circuits::Fr;
use rand::RngCore;
use sha3::Sha3_256;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use uuid::Uuid;
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A sealed value could not be opened: wrong key, wrong binding, or damaged bytes. Deliberately
/// carries no detail.
#[derive(Debug, thiserror::Error)]
#[error("ciphertext failed authentication")]
pub struct OpenError;

/// The master key file could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("master key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The file's mode lets other users read it.
    #[error(
        "master key file {path} is readable by other users (mode {mode:o}); run chmod 600 on it"
    )]
    Permissions {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not 64 hexadecimal digits.
    #[error("master key is not 64 hexadecimal digits")]
    Malformed,
}

/// What a ciphertext is bound to through the AEAD's associated data.
#[derive(Debug, Clone, Copy)]
pub enum Binding {
    /// A patient's data key, wrapped by the master key.
    PatientKey { patient: Uuid },
    /// One version of a patient's personal and medical details.
    Profile { patient: Uuid, version: i32 },
    /// The content of one record version.
    RecordContent {
        record: Uuid,
        version: i32,
        patient: Uuid,
    },
    /// The content key of one record version, wrapped by the patient's data key.
    RecordKey {
        record: Uuid,
        version: i32,
        patient: Uuid,
    },
}

impl Binding {
    fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match *self {
            Binding::PatientKey { patient } => {
                out.extend_from_slice(b"medvault/patient-key/v1");
                out.extend_from_slice(patient.as_bytes());
            }
            Binding::Profile { patient, version } => {
                out.extend_from_slice(b"medvault/profile/v1");
                out.extend_from_slice(patient.as_bytes());
                out.extend_from_slice(&version.to_be_bytes());
            }
            Binding::RecordContent {
                record,
                version,
                patient,
            } => {
                out.extend_from_slice(b"medvault/record-content/v1");
                out.extend_from_slice(record.as_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(patient.as_bytes());
            }
            Binding::RecordKey {
                record,
                version,
                patient,
            } => {
                out.extend_from_slice(b"medvault/record-key/v1");
                out.extend_from_slice(record.as_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(patient.as_bytes());
            }
        }
        out
    }
}

/// A 256-bit symmetric key: a patient's data key or a record version's content key.
pub struct SymmetricKey(Zeroizing<[u8; KEY_LEN]>);

impl SymmetricKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut());
        SymmetricKey(key)
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, OpenError> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| OpenError)?;
        Ok(SymmetricKey(Zeroizing::new(key)))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Encrypts `plaintext` bound to `binding`; the output is nonce followed by ciphertext.
    pub fn seal(&self, binding: Binding, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = binding.associated_data();
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 refuses only inputs of 256 GiB"));
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens what [`SymmetricKey::seal`] produced for the same binding.
    pub fn open(&self, binding: Binding, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = binding.associated_data();
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError)
    }

    /// Seals another key under this one.
    pub fn wrap(&self, binding: Binding, key: &SymmetricKey) -> Vec<u8> {
        self.seal(binding, key.0.as_ref())
    }

    /// Opens a key sealed by [`SymmetricKey::wrap`].
    pub fn unwrap_key(&self, binding: Binding, wrapped: &[u8]) -> Result<SymmetricKey, OpenError> {
        SymmetricKey::from_slice(&self.open(binding, wrapped)?)
    }
}

/// The root of all keys. Never used directly: it derives a wrapping key for patient data keys,
/// a pseudonym key for anchors, one for consent pseudonyms, and the export signing seed and
/// pseudonym secret, so a leak of one use reveals nothing of the others.
pub struct MasterKey {
    wrapping_key: SymmetricKey,
    pseudonym_key: Zeroizing<[u8; KEY_LEN]>,
    consent_pseudonym_key: Zeroizing<[u8; KEY_LEN]>,
    export_signing_seed: Zeroizing<[u8; KEY_LEN]>,
    export_pseudonym_secret: Zeroizing<[u8; KEY_LEN]>,
    check_value: [u8; KEY_LEN],
}

impl MasterKey {
    fn from_bytes(master: &[u8; KEY_LEN]) -> Self {
        MasterKey {
            wrapping_key: SymmetricKey(derive(master, b"medvault/wrapping-key/v1")),
            pseudonym_key: derive(master, b"medvault/pseudonym-key/v1"),
            consent_pseudonym_key: derive(master, b"medvault/consent-pseudonym-key/v1"),
            export_signing_seed: derive(master, b"medvault/export-signing-key/v1"),
            export_pseudonym_secret: derive(master, b"medvault/export-pseudonym-secret/v1"),
            check_value: *derive(master, b"medvault/key-check/v1"),
        }
    }

    /// Reads the key file at `path`; `None` if there is none. A key file readable by others is
    /// refused. Whether a missing file may be created is the caller's to decide, against the
    /// database ([`crate::Vault::open`]).
    pub fn read(path: &Path) -> Result<Option<Self>, KeyFileError> {
        let io_error = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(error)),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let contents = Zeroizing::new(std::fs::read_to_string(path).map_err(io_error)?);
        MasterKey::from_hex(contents.trim()).map(Some)
    }

    /// Creates the key file at `path` with mode 0600 and a fresh random key; fails if the file
    /// exists.
    pub fn create(path: &Path) -> Result<Self, KeyFileError> {
        let io_error = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(master.as_mut());
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        let encoded = Zeroizing::new(hex::encode(master.as_ref()));
        file.write_all(encoded.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        Ok(MasterKey::from_bytes(&master))
    }

    /// Parses a master key given as 64 hexadecimal digits (for `MEDVAULT_MASTER_KEY`).
    pub fn from_hex(encoded: &str) -> Result<Self, KeyFileError> {
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(encoded, master.as_mut()).map_err(|_| KeyFileError::Malformed)?;
        Ok(MasterKey::from_bytes(&master))
    }

    /// A value that identifies this key without revealing it (an HMAC of a fixed label under
    /// it), stored in the database so that a start with another key is noticed.
    pub fn check_value(&self) -> [u8; KEY_LEN] {
        self.check_value
    }

    /// Wraps a patient's data key for storage.
    pub fn wrap_patient_key(&self, patient: Uuid, key: &SymmetricKey) -> Vec<u8> {
        self.wrapping_key.wrap(Binding::PatientKey { patient }, key)
    }

    /// Unwraps a stored patient data key.
    pub fn unwrap_patient_key(
        &self,
        patient: Uuid,
        wrapped: &[u8],
    ) -> Result<SymmetricKey, OpenError> {
        self.wrapping_key
            .unwrap_key(Binding::PatientKey { patient }, wrapped)
    }

    /// The Ed25519 key that signs export manifests: derived, so that it is the same after every
    /// restart and on every server sharing the master key, with no key file of its own.
    pub fn export_signing_key(&self) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&self.export_signing_seed)
    }

    /// The secret per-recipient pseudonym keys are derived from.
    pub fn export_pseudonym_secret(&self) -> [u8; KEY_LEN] {
        *self.export_pseudonym_secret
    }

    /// The patient's pseudonym on the chain: a keyed hash of their id that only this server can
    /// link back.
    pub fn patient_pseudonym(&self, patient: Uuid) -> [u8; 32] {
        *derive(self.pseudonym_key.as_ref(), patient.as_bytes())
    }

    /// The patient's pseudonym in consent leaves and proofs (MISSION.md decision 4): a field
    /// element keyed by this server, stable for the patient, unlinkable to them without the key.
    pub fn patient_consent_pseudonym(&self, patient: Uuid) -> Fr {
        self.consent_field_element(b"patient", patient)
    }

    /// The grantee commitment in a recipient organization's research-consent leaves. Recipients
    /// never prove consent (the server exports for them), so the secret behind it is derived
    /// here and never leaves: the leaf records the consent under the anchored root all the same.
    pub fn recipient_grantee_commitment(&self, organization: Uuid) -> Fr {
        medvault_circuits::grantee_commitment(
            self.consent_field_element(b"recipient", organization),
        )
    }

    /// A keyed hash of `(label, id)` as a field element: 248 bits, so always below the modulus.
    fn consent_field_element(&self, label: &[u8], id: Uuid) -> Fr {
        let mut input = label.to_vec();
        input.extend_from_slice(id.as_bytes());
        let mut bytes = *derive(self.consent_pseudonym_key.as_ref(), &input);
        bytes[FIELD_BYTES - 1] = 0;
        field_from_bytes("consent pseudonym", &bytes)
            .unwrap_or_else(|_| unreachable!("a 248-bit value is below the BN254 modulus"))
    }
}

fn derive(key: &[u8], label: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut mac = <Hmac<Sha3_256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[7u8; KEY_LEN])
    }

    #[test]
    fn a_record_ciphertext_opens_only_under_its_own_binding() {
        let key = SymmetricKey::generate();
        let (record, patient) = (Uuid::new_v4(), Uuid::new_v4());
        let binding = Binding::RecordContent {
            record,
            version: 1,
            patient,
        };
        let sealed = key.seal(binding, b"HbA1c 6.1 %");
        assert_eq!(
            key.open(binding, &sealed).unwrap().as_slice(),
            b"HbA1c 6.1 %"
        );
        for moved in [
            Binding::RecordContent {
                record,
                version: 2,
                patient,
            },
            Binding::RecordContent {
                record: Uuid::new_v4(),
                version: 1,
                patient,
            },
            Binding::RecordContent {
                record,
                version: 1,
                patient: Uuid::new_v4(),
            },
            Binding::RecordKey {
                record,
                version: 1,
                patient,
            },
        ] {
            assert!(key.open(moved, &sealed).is_err(), "{moved:?} must not open");
        }
    }

    #[test]
    fn damaged_or_short_ciphertexts_are_refused() {
        let key = SymmetricKey::generate();
        let binding = Binding::Profile {
            patient: Uuid::new_v4(),
            version: 1,
        };
        let mut sealed = key.seal(binding, b"Jane Roe");
        *sealed.last_mut().unwrap() ^= 1;
        assert!(key.open(binding, &sealed).is_err());
        assert!(key.open(binding, &sealed[..10]).is_err());
    }

    #[test]
    fn patient_keys_round_trip_only_for_their_patient() {
        let master = master();
        let (patient, other) = (Uuid::new_v4(), Uuid::new_v4());
        let data_key = SymmetricKey::generate();
        let wrapped = master.wrap_patient_key(patient, &data_key);
        let unwrapped = master.unwrap_patient_key(patient, &wrapped).unwrap();
        assert_eq!(unwrapped.0.as_ref(), data_key.0.as_ref());
        assert!(master.unwrap_patient_key(other, &wrapped).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloads_the_same_key() {
        let dir = std::env::temp_dir().join(format!("medvault-key-test-{}", Uuid::new_v4()));
        let path = dir.join("master.key");
        assert!(MasterKey::read(&path).unwrap().is_none());
        let created = MasterKey::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let reloaded = MasterKey::read(&path).unwrap().unwrap();
        assert_eq!(created.check_value(), reloaded.check_value());
        assert!(
            MasterKey::create(&path).is_err(),
            "an existing key is never replaced"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::read(&path),
            Err(KeyFileError::Permissions { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn different_keys_have_different_check_values() {
        let other = MasterKey::from_bytes(&[8u8; KEY_LEN]);
        assert_ne!(master().check_value(), other.check_value());
        assert_ne!(master().check_value(), [7u8; KEY_LEN]);
    }
}
