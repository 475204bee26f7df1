//! A grantee's secret and the file it lives in on the grantee's own machine. The patient's
//! server only ever sees [`GranteeSecret::commitment`]; whoever holds the file can prove the
//! grantee's consents, so it is created readable by its owner alone and never overwritten.

use crate::error::Error;
use crate::field::{field_from_hex, field_to_hex};
use crate::types::{grantee_commitment, random_field_element};
use ark_bn254::Fr;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The secret behind a grantee commitment.
#[derive(Clone, PartialEq, Eq)]
pub struct GranteeSecret(Fr);

/// The file's JSON form: the format's version and the secret in the hex form of
/// [`crate::field`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GranteeSecretFile {
    format: String,
    secret: String,
}

const FILE_FORMAT: &str = "medvault-grantee-secret/v1";

impl GranteeSecret {
    /// A fresh, uniformly random secret.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        GranteeSecret(random_field_element(rng))
    }

    /// The secret as the field element the circuit takes.
    pub fn field_element(&self) -> Fr {
        self.0
    }

    /// What the grantee registers with servers and what leaves commit to.
    pub fn commitment(&self) -> Fr {
        grantee_commitment(self.0)
    }

    /// Writes the secret to a new file at `path`, readable and writable by its owner only (mode
    /// 0600 on Unix); an existing file is never replaced, so a second `keygen` cannot destroy
    /// the key the grantee's leaves commit to.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        let io_error = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let document = GranteeSecretFile {
            format: FILE_FORMAT.to_owned(),
            secret: field_to_hex(self.0),
        };
        let text = serde_json::to_string_pretty(&document)
            .map_err(|error| Error::MalformedDocument(error.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_error)?;
        file.write_all(text.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }

    /// Reads a file written by [`GranteeSecret::write_new`].
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let document: GranteeSecretFile = serde_json::from_str(&text)
            .map_err(|error| Error::MalformedDocument(error.to_string()))?;
        if document.format != FILE_FORMAT {
            return Err(Error::MalformedDocument(format!(
                "{}: format {:?}, expected {FILE_FORMAT:?}",
                path.display(),
                document.format
            )));
        }
        field_from_hex("grantee secret", &document.secret).map(GranteeSecret)
    }
}

/// Never prints the secret, only that there is one.
impl std::fmt::Debug for GranteeSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("GranteeSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_secret_file_reads_back_is_private_and_is_never_replaced() {
        let directory = std::env::temp_dir().join(format!("grantee-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("doctor.secret");
        let _ = std::fs::remove_file(&path);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let secret = GranteeSecret::generate(&mut rng);
        secret.write_new(&path).unwrap();
        assert_eq!(GranteeSecret::read(&path).unwrap(), secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = GranteeSecret::generate(&mut rng);
        assert!(matches!(other.write_new(&path), Err(Error::Io { .. })));
        assert_eq!(GranteeSecret::read(&path).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "GranteeSecret(..)");
        std::fs::write(&path, "{\"format\":\"other\",\"secret\":\"0x00\"}").unwrap();
        assert!(matches!(
            GranteeSecret::read(&path),
            Err(Error::MalformedDocument(_))
        ));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
