//! Login, logout and turning a bearer token back into an [`Actor`].

use crate::auth::{self, Actor};
use crate::domain::Role;
use crate::error::{VaultError, VaultResult};
use crate::Vault;
use chrono::{DateTime, Utc};
use std::net::IpAddr;

/// A new session: the bearer token is shown once and stored only as a digest.
pub struct Session {
    /// The bearer token for the `Authorization` header.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// Who logged in, as they act from now on.
    pub actor: Actor,
}

#[derive(Debug, thiserror::Error)]
#[error("a stored user has an unknown role")]
struct UnknownRole;

impl Vault {
    /// Checks a username and password and opens a session. Unknown users and wrong passwords
    /// get the same answer after the same work; every attempt is first charged to the
    /// account's and the client address's failure counters, and refused unchecked while either
    /// is locked.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client_address: Option<IpAddr>,
    ) -> VaultResult<Session> {
        let attempt = self.charge_login_attempt(username, client_address).await?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT id, password_hash, role, organization_id FROM users
                         WHERE username = $1",
                    )
                    .await?,
                &[&username],
            )
            .await?;
        let (account, stored_hash): (Option<Actor>, String) = match row {
            Some(row) => {
                let role: &str = row.get(2);
                let actor = Actor {
                    user_id: row.get(0),
                    role: Role::parse(role).ok_or_else(|| VaultError::internal(UnknownRole))?,
                    organization_id: row.get(3),
                    session: None,
                };
                (Some(actor), row.get(1))
            }
            None => (None, auth::decoy_password_hash().to_owned()),
        };
        let password = password.to_owned();
        let verified =
            tokio::task::spawn_blocking(move || auth::verify_password(&stored_hash, &password))
                .await
                .map_err(VaultError::internal)?;
        let actor = match (account, verified) {
            (Some(actor), true) => actor,
            _ => return Err(VaultError::Unauthenticated("wrong username or password")),
        };
        self.settle_successful_login(attempt).await?;
        let (token, digest) = auth::new_session_token();
        let actor = Actor {
            session: Some(digest),
            ..actor
        };
        let expires_at = Utc::now() + self.session_ttl;
        client
            .execute(
                &client.prepare_cached("INSERT INTO sessions (token_sha256, user_id, expires_at) VALUES ($1, $2, $3)").await?,
                &[&digest.as_slice(), &actor.user_id, &expires_at],
            )
            .await?;
        Ok(Session {
            token,
            expires_at,
            actor,
        })
    }

    /// Revokes the session of `token`; returns whether a live session was revoked.
    pub async fn logout(&self, token: &str) -> VaultResult<bool> {
        let client = self.pool.get().await?;
        let revoked = client
            .execute(
                &client
                    .prepare_cached(
                        "UPDATE sessions SET revoked_at = now()
                 WHERE token_sha256 = $1 AND revoked_at IS NULL AND expires_at > now()",
                    )
                    .await?,
                &[&auth::token_digest(token).as_slice()],
            )
            .await?;
        Ok(revoked == 1)
    }

    /// The actor behind a live bearer token, if any.
    pub async fn authenticate(&self, token: &str) -> VaultResult<Option<Actor>> {
        let digest = auth::token_digest(token);
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client.prepare_cached("SELECT u.id, u.role, u.organization_id FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_sha256 = $1 AND s.revoked_at IS NULL AND s.expires_at > now()").await?,
                &[&digest.as_slice()],
            )
            .await?;
        Ok(row.and_then(|row| {
            let role: &str = row.get(1);
            Some(Actor {
                user_id: row.get(0),
                role: Role::parse(role)?,
                organization_id: row.get(2),
                session: Some(digest),
            })
        }))
    }
}
