//! The one error type every GraphQL resolver returns, and its mapping to `extensions.code`.
//!
//! Messages are written for the caller and never carry health data or internal detail: the
//! cause of an internal error is logged with the request id and replaced by a generic message.

use async_graphql::ErrorExtensions;

/// Why a request failed, as the API tells it.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into a GraphQL error
/// without a code, so leaving it out makes `?` in a resolver go through the conversion below,
/// which always sets `extensions.code`.
#[derive(Debug)]
pub enum ApiError {
    /// No valid bearer token, or a wrong username or password.
    Unauthenticated(&'static str),
    /// The caller is known but not allowed to do this.
    Forbidden,
    /// The named object does not exist (or is deleted).
    NotFound(&'static str),
    /// The input is well typed but not acceptable.
    BadUserInput(String),
    /// The object changed since the caller read it, or a unique name is taken.
    Conflict(String),
    /// Too many attempts: the caller may try again after `retry_after`.
    TooManyRequests {
        /// What was attempted too often, for the message.
        what: &'static str,
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// Something failed inside the server; details are in the log only.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The message shown to the caller.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(message) => (*message).to_owned(),
            ApiError::Forbidden => "not allowed".to_owned(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::BadUserInput(message) | ApiError::Conflict(message) => message.clone(),
            ApiError::TooManyRequests { what, retry_after } => format!(
                "too many {what}; retry in {} s",
                retry_after_seconds(*retry_after)
            ),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadUserInput(_) => "BAD_USER_INPUT",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            ApiError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// Wraps any failure of a dependency (database, pool, crypto) as internal.
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(error))
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        ApiError::internal(error)
    }
}

impl From<crate::crypto::OpenError> for ApiError {
    fn from(error: crate::crypto::OpenError) -> Self {
        ApiError::internal(error)
    }
}

impl From<crate::domain::InvalidInput> for ApiError {
    fn from(error: crate::domain::InvalidInput) -> Self {
        ApiError::BadUserInput(error.0.to_string())
    }
}

impl ApiError {
    /// The GraphQL error for this failure; an internal cause is logged here and not sent.
    pub fn to_graphql(&self) -> async_graphql::Error {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = %cause, "internal error");
        }
        async_graphql::Error::new(self.message()).extend_with(|_, extensions| {
            extensions.set("code", self.code());
            if let ApiError::TooManyRequests { retry_after, .. } = self {
                extensions.set("retryAfterSeconds", retry_after_seconds(*retry_after));
            }
        })
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.to_graphql()
    }
}

/// Whole seconds to wait, rounded up so that a retry at that time finds the lock gone.
fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Parses a GraphQL `ID` that must be a UUID.
pub fn parse_id(id: &async_graphql::ID, what: &'static str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id")))
}

/// The result type of resolvers and vault operations.
pub type ApiResult<T> = Result<T, ApiError>;
