//! Who is calling: password hashing (Argon2id), opaque bearer tokens stored only as a digest,
//! and the [`Actor`] every request is authorized as.

use crate::domain::Role;
use crate::error::{VaultError, VaultResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// An authenticated principal, as loaded from a live session.
#[derive(Clone, Copy, Debug)]
pub struct Actor {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's one role.
    pub role: Role,
    /// The organization (hospital) the user belongs to.
    pub organization_id: Uuid,
    /// The digest of the bearer token the request came with; `None` for an actor the operator
    /// acts as at the command line. Consent challenges and sessions are bound to it, so a
    /// doctor's consent opened with one token does not follow the doctor to another.
    pub session: Option<SessionDigest>,
}

/// The SHA-256 digest a bearer token is stored and known by.
pub type SessionDigest = [u8; 32];

/// The operator of a deployment, acting at the command line with the database and the master
/// key in hand (`medvault admin create`, `export --requester`, `demo`): the one caller that is
/// not a signed-in user. Nothing reachable from the network makes one.
#[derive(Clone, Copy, Debug)]
pub struct Operator(());

impl Operator {
    /// The operator of this process; only commands the operator runs call it.
    pub fn at_command_line() -> Operator {
        Operator(())
    }
}

/// Hashes a password with Argon2id and a random salt, in PHC string form. CPU-heavy: call it from
/// a blocking thread.
pub fn hash_password(password: &str) -> VaultResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| VaultError::InvalidInput("password cannot be hashed".into()))
}

/// Checks a password against a stored PHC string. CPU-heavy: call it from a blocking thread.
pub fn verify_password(stored_hash: &str, password: &str) -> bool {
    PasswordHash::new(stored_hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A PHC hash of a password nobody has, verified against when the username is unknown so that
/// a login takes as long whether or not the user exists.
pub fn decoy_password_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        hash_password(&URL_SAFE_NO_PAD.encode(random)).unwrap_or_default()
    })
}

/// A new bearer token and the digest under which it is stored.
pub fn new_session_token() -> (String, SessionDigest) {
    let mut random = [0u8; 32];
    OsRng.fill_bytes(&mut random);
    let token = URL_SAFE_NO_PAD.encode(random);
    let digest = token_digest(&token);
    (token, digest)
}

/// The digest a token is stored and looked up under; the token itself is never stored.
pub fn token_digest(token: &str) -> SessionDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Minimum password length accepted for new accounts.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Checks a new password's length.
pub fn check_new_password(password: &str) -> VaultResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > 1024 {
        return Err(VaultError::InvalidInput(format!(
            "password must be {MIN_PASSWORD_LEN} to 1024 characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterx"));
        assert!(!verify_password("not a phc string", "anything"));
    }

    #[test]
    fn tokens_are_random_and_stored_as_digest() {
        let (first, digest) = new_session_token();
        let (second, _) = new_session_token();
        assert_ne!(first, second);
        assert_eq!(token_digest(&first), digest);
        assert_ne!(digest.as_slice(), first.as_bytes());
    }
}
