//! The one error type of every vault operation.
//!
//! The caller-facing variants carry messages written for the caller, never health data; the
//! internal ones carry their cause, for the log and the operator's command line. Transports map
//! the variants to their own codes in one place each (`medvault-server`'s `error.rs` for
//! GraphQL's `extensions.code`).

use std::time::Duration;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No valid session, or a wrong username or password.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but not allowed to do this.
    #[error("not allowed")]
    Forbidden,
    /// The named object does not exist (or is deleted).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input is well typed but not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// The object changed since the caller read it, or a unique name is taken.
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts: the caller may try again after `retry_after`.
    #[error("too many {what}; retry in {} s", whole_seconds(*retry_after))]
    TooManyAttempts {
        /// What was attempted too often, for the message.
        what: &'static str,
        /// How long to wait.
        retry_after: Duration,
    },
    /// The hospital is not a member of the anchor chain; the message says how to admit it.
    #[error("{0}")]
    NotAMember(String),
    /// The anchor chain could not be asked what the operation needs from it.
    #[error("the anchor chain cannot be reached")]
    ChainUnavailable(#[source] crate::anchoring::AnchoringError),
    /// A statement failed.
    #[error("database")]
    Database(#[from] tokio_postgres::Error),
    /// No database connection could be had.
    #[error("database connection pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A sealed value could not be opened with the keys it should open with.
    #[error("a sealed value cannot be opened")]
    Sealed(#[from] crate::crypto::OpenError),
    /// Anything else that failed inside the vault.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl VaultError {
    /// Wraps any other failure of a dependency as internal.
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        VaultError::Internal(Box::new(error))
    }

    /// Whether the failure is the vault's own rather than the caller's: its cause is for the
    /// log, not for the caller.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            VaultError::Database(_)
                | VaultError::Pool(_)
                | VaultError::Sealed(_)
                | VaultError::Internal(_)
        )
    }

    /// What the caller may be told: the message of a caller-facing failure, and only "internal
    /// error" for the vault's own (its cause goes to the log, through [`Causes`]).
    pub fn caller_message(&self) -> String {
        if self.is_internal() {
            "internal error".to_owned()
        } else {
            self.to_string()
        }
    }
}

/// An error and its sources, "outer: inner: innermost", for the log and the command line.
pub struct Causes<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<crate::domain::InvalidInput> for VaultError {
    fn from(error: crate::domain::InvalidInput) -> Self {
        VaultError::InvalidInput(error.0.to_string())
    }
}

/// Whole seconds to wait, rounded up so that a retry at that time finds the lock gone.
pub fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The result type of vault operations.
pub type VaultResult<T> = Result<T, VaultError>;
