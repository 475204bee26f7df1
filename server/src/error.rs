//! The one error type every GraphQL resolver returns, its mapping from the vault's errors, and
//! its mapping to `extensions.code`.
//!
//! Messages are written for the caller and never carry health data or internal detail: the
//! cause of an internal error is logged with the request id and replaced by a generic message.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{ErrorExtensionValues, Response};
use medvault_vault::error::{whole_seconds, Causes};
use medvault_vault::VaultError;
use std::sync::Arc;

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
    /// A service the answer needs (the anchor chain) cannot be reached now; the request may
    /// succeed if tried again.
    Unavailable(&'static str),
    /// Something failed inside the server; the cause and its sources, for the log only.
    Internal(String),
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
                whole_seconds(*retry_after)
            ),
            ApiError::Unavailable(message) => (*message).to_owned(),
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
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// Wraps any failure of a dependency as internal.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        ApiError::Internal(Causes(error).to_string())
    }
}

/// What a caller is told when the anchor chain does not answer.
pub(crate) const CHAIN_UNAVAILABLE: &str = "the anchor chain cannot be reached; try again shortly";

/// The one mapping of the vault's errors to the API's: internal causes stay internal.
impl From<&VaultError> for ApiError {
    fn from(error: &VaultError) -> Self {
        match error {
            VaultError::Unauthenticated(message) => ApiError::Unauthenticated(message),
            VaultError::Forbidden | VaultError::NotAMember(_) => ApiError::Forbidden,
            VaultError::ChainUnavailable(_) => ApiError::Unavailable(CHAIN_UNAVAILABLE),
            VaultError::NotFound(what) => ApiError::NotFound(what),
            VaultError::InvalidInput(message) => ApiError::BadUserInput(message.clone()),
            VaultError::Conflict(message) => ApiError::Conflict(message.clone()),
            VaultError::TooManyAttempts { what, retry_after } => ApiError::TooManyRequests {
                what,
                retry_after: *retry_after,
            },
            internal => ApiError::internal(internal),
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(error: VaultError) -> Self {
        ApiError::from(&error)
    }
}

impl ApiError {
    /// The GraphQL error for this failure; an internal cause is logged here and not sent.
    pub fn to_graphql(&self) -> async_graphql::Error {
        async_graphql::Error {
            message: self.message(),
            source: None,
            extensions: Some(self.extensions()),
        }
    }

    /// A whole GraphQL response carrying only this error, for refusals made before a request
    /// reaches the schema.
    pub fn to_response(&self) -> Response {
        let mut error = async_graphql::ServerError::new(self.message(), None);
        error.extensions = Some(self.extensions());
        Response::from_errors(vec![error])
    }

    /// `extensions` of the GraphQL error: the code, and when to retry. Logs an internal cause,
    /// which is never sent.
    fn extensions(&self) -> ErrorExtensionValues {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = %cause, "internal error");
        }
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", self.code());
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            extensions.set("retryAfterSeconds", whole_seconds(*retry_after));
        }
        extensions
    }
}

/// Gives the errors of vault operations their code and caller's message, once for every
/// resolver. Resolvers use `?` on vault calls: async-graphql turns the [`VaultError`] into a
/// GraphQL error with the vault's message and keeps it as the error's source, which this
/// extension finds in the response and rewrites through [`ApiError`].
pub struct VaultErrorCodes;

impl ExtensionFactory for VaultErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(VaultErrorCodes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for VaultErrorCodes {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        for error in &mut response.errors {
            if let Some(vault_error) = error.source::<VaultError>() {
                let api_error = ApiError::from(vault_error);
                error.message = api_error.message();
                error.extensions = Some(api_error.extensions());
            }
        }
        response
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

/// The result type of resolvers.
pub type ApiResult<T> = Result<T, ApiError>;
