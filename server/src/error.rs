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
        async_graphql::Error::new(self.message()).extend_with(|_, e| e.set("code", self.code()))
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.to_graphql()
    }
}

/// Parses a GraphQL `ID` that must be a UUID.
pub fn parse_id(id: &async_graphql::ID, what: &'static str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id")))
}

/// The result type of resolvers and vault operations.
pub type ApiResult<T> = Result<T, ApiError>;
