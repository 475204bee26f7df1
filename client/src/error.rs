//! The crate's one error type. What the server refused ([`ClientError::Api`]), what it answered
//! outside its contract ([`ClientError::Malformed`]) and what the client refused to prove
//! ([`ClientError::Statement`]) are different outcomes, so that a caller can tell "not allowed"
//! from "broken server" from "nothing to prove".

use medvault_circuits::StatementViolation;
use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong talking to a medvault server, by kind.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No answer: connection refused, timeout, a body cut short.
    #[error("request to the server failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with a GraphQL error. `code` is its `extensions.code`
    /// (`FORBIDDEN`, `UNAUTHENTICATED`, `NOT_FOUND`, `BAD_USER_INPUT`, `CONFLICT`,
    /// `TOO_MANY_REQUESTS`, `INTERNAL_SERVER_ERROR`; `UNKNOWN` if the error had none).
    #[error("the server refused: {code}: {message}")]
    Api {
        /// The error's `extensions.code`.
        code: String,
        /// The error's message, written by the server for the caller.
        message: String,
    },
    /// The answer is not what the GraphQL contract says it is.
    #[error("the server's answer is not what the contract says: {0}")]
    Malformed(String),
    /// A downloaded or cached proving key is not the one the server advertised.
    #[error("the proving key's SHA3-256 is {actual}, the server advertised {expected}")]
    ProvingKeyHash {
        /// `provingKeyHash` from `consentKeys`.
        expected: String,
        /// SHA3-256 of the bytes received.
        actual: String,
    },
    /// The grant the server holds for this doctor cannot prove what is asked; found before
    /// proving, so no proof that cannot verify is ever sent.
    #[error("cannot prove consent: {0}")]
    Statement(StatementError),
    /// Loading the proving key or proving failed in `medvault-circuits`.
    #[error(transparent)]
    Circuits(#[from] medvault_circuits::Error),
    /// Reading or writing the proving key cache.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The blocking task that loads the proving key or proves panicked or was cancelled.
    #[error("the blocking task loading the proving key or proving did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why the doctor's grant does not prove the statement the server asks for, in words for the
/// doctor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StatementError {
    /// The grant the server returned names another patient than the challenge.
    #[error("the grant is for another patient than the one the challenge names")]
    OtherPatient,
    /// The leaf made from this secret and the grant is not in the tree with the server's root:
    /// most often a secret other than the one whose commitment the grant was made to.
    #[error(
        "the grant is not in the consent tree the server named \
         (is this the secret whose commitment was registered?)"
    )]
    NotInTree,
    /// The grant lacks a scope the request needs.
    #[error("the grant does not cover the scope asked for")]
    ScopeNotCovered,
    /// The grant expired at or before the challenge's `now`.
    #[error("the grant has expired")]
    Expired,
    /// A reason `medvault-circuits` added after this client was written.
    #[error(transparent)]
    Other(StatementViolation),
}

impl From<StatementViolation> for StatementError {
    fn from(violation: StatementViolation) -> Self {
        match violation {
            StatementViolation::NotInTree => StatementError::NotInTree,
            StatementViolation::ScopeNotCovered => StatementError::ScopeNotCovered,
            StatementViolation::Expired => StatementError::Expired,
            other => StatementError::Other(other),
        }
    }
}
