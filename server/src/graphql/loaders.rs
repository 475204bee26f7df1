//! Batched loading of users for `author`, `doctor` and `actor` edges, so a page of records costs
//! one user query, not one per record.

use crate::error::ApiError;
use async_graphql::dataloader::Loader;
use medvault_vault::auth::Actor;
use medvault_vault::{UserInfo, Vault};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// Loads users by id for the request's viewer; made per request so nothing is cached across
/// callers.
pub struct UserLoader {
    /// The vault to load from.
    pub vault: Vault,
    /// Whom the users are loaded for (see [`RequestContext::viewer`](super::RequestContext)).
    pub viewer: Arc<OnceLock<Actor>>,
}

impl Loader<Uuid> for UserLoader {
    type Value = UserInfo;
    type Error = Arc<ApiError>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, UserInfo>, Self::Error> {
        let viewer = self
            .viewer
            .get()
            .ok_or(super::NOT_SIGNED_IN)
            .map_err(Arc::new)?;
        let users = self
            .vault
            .users(viewer, ids)
            .await
            .map_err(|error| Arc::new(error.into()))?;
        Ok(users.into_iter().map(|user| (user.id, user)).collect())
    }
}
