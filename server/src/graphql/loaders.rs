//! Batched loading of users for `author`, `doctor` and `actor` edges, so a page of records costs
//! one user query, not one per record.

use crate::vault::{UserInfo, Vault};
use async_graphql::dataloader::Loader;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Loads users by id; made per request so nothing is cached across callers.
pub struct UserLoader(pub Vault);

impl Loader<Uuid> for UserLoader {
    type Value = UserInfo;
    type Error = Arc<crate::error::ApiError>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, UserInfo>, Self::Error> {
        let users = self.0.users(ids).await.map_err(Arc::new)?;
        Ok(users.into_iter().map(|user| (user.id, user)).collect())
    }
}
