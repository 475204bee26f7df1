//! Organizations (member hospitals and export recipients) and their users. Staff names are not health data and are stored in
//! the clear; a patient's identity lives only in their encrypted profile.

use super::{require_role, Page, PageRequest, Vault};
use crate::auth::{self, Actor};
use crate::domain::{OrganizationKind, Role};
use crate::error::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

/// A member hospital or an export recipient.
#[derive(Clone, Debug)]
pub struct Organization {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// Hospital or which kind of recipient.
    pub kind: OrganizationKind,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

const ORGANIZATION_COLUMNS: &str = "id, name, kind, created_at";

fn organization_from_row(row: &Row) -> ApiResult<Organization> {
    Ok(Organization {
        id: row.get(0),
        name: row.get(1),
        kind: OrganizationKind::parse(row.get(2)).ok_or_else(|| ApiError::internal(UnknownKind))?,
        created_at: row.get(3),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("a stored organization has an unknown kind")]
struct UnknownKind;

fn check_organization_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::BadUserInput(
            "organization name must be 1 to 200 characters".into(),
        ));
    }
    Ok(())
}

/// A user as any authenticated caller may see them: no secrets, no health data.
#[derive(Clone, Debug)]
pub struct UserInfo {
    /// Their id.
    pub id: Uuid,
    /// Their login name.
    pub username: String,
    /// Their role.
    pub role: Role,
    /// Their hospital.
    pub organization_id: Uuid,
    /// A staff member's name; `None` for patients.
    pub display_name: Option<String>,
    /// A doctor's specialty.
    pub specialty: Option<String>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// What an admin (or the bootstrap command) gives to create a staff account.
pub struct NewStaffUser {
    /// Login name, unique across the deployment.
    pub username: String,
    /// Initial password.
    pub password: String,
    /// Any role but patient.
    pub role: Role,
    /// The staff member's name.
    pub display_name: String,
    /// A doctor's specialty.
    pub specialty: Option<String>,
}

const USER_COLUMNS: &str =
    "id, username, role, organization_id, display_name, specialty, created_at";

fn user_from_row(row: &Row) -> ApiResult<UserInfo> {
    let role: &str = row.get(2);
    Ok(UserInfo {
        id: row.get(0),
        username: row.get(1),
        role: Role::parse(role).ok_or_else(|| ApiError::internal(UnknownRole))?,
        organization_id: row.get(3),
        display_name: row.get(4),
        specialty: row.get(5),
        created_at: row.get(6),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("a stored user has an unknown role")]
struct UnknownRole;

/// Hashes a new password off the async runtime.
pub(super) async fn hash_new_password(password: &str) -> ApiResult<String> {
    auth::check_new_password(password)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
}

/// Maps a unique violation on `users.username` to CONFLICT.
pub(super) fn username_conflict(error: tokio_postgres::Error) -> ApiError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        ApiError::Conflict("username is taken".into())
    } else {
        error.into()
    }
}

pub(super) fn check_username(username: &str) -> ApiResult<()> {
    let valid = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadUserInput(
            "username must be 3 to 64 characters of letters, digits and . _ - @".into(),
        ))
    }
}

impl Vault {
    /// Registers a hospital, or returns the existing one of that name.
    pub async fn ensure_organization(&self, name: &str) -> ApiResult<Organization> {
        check_organization_name(name)?;
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(&format!(
                        "WITH inserted AS (
                     INSERT INTO organizations (id, name) VALUES ($1, $2)
                     ON CONFLICT (name) DO NOTHING RETURNING {ORGANIZATION_COLUMNS})
                 SELECT {ORGANIZATION_COLUMNS} FROM inserted
                 UNION ALL SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE name = $2"
                    ))
                    .await?,
                &[&Uuid::now_v7(), &name],
            )
            .await?;
        organization_from_row(&row)
    }

    /// An admin registers an insurer, research institute or government agency that patients
    /// may give research consent to.
    pub async fn create_recipient_organization(
        &self,
        admin: &Actor,
        name: &str,
        kind: OrganizationKind,
    ) -> ApiResult<Organization> {
        require_role(admin, Role::Admin)?;
        check_organization_name(name)?;
        if kind == OrganizationKind::Hospital {
            return Err(ApiError::BadUserInput(
                "hospitals join with `medvault admin create`, not as recipients".into(),
            ));
        }
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(&format!(
                        "INSERT INTO organizations (id, name, kind) VALUES ($1, $2, $3)
                         RETURNING {ORGANIZATION_COLUMNS}"
                    ))
                    .await?,
                &[&Uuid::now_v7(), &name, &kind.as_str()],
            )
            .await
            .map_err(|error| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    ApiError::Conflict("an organization of that name exists".into())
                } else {
                    error.into()
                }
            })?;
        organization_from_row(&row)
    }

    /// One organization by id.
    pub async fn organization(&self, id: Uuid) -> ApiResult<Organization> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = $1"
                    ))
                    .await?,
                &[&id],
            )
            .await?
            .ok_or(ApiError::NotFound("organization"))?;
        organization_from_row(&row)
    }

    /// Organizations by id, all of them or those of one kind.
    pub async fn organizations(
        &self,
        kind: Option<OrganizationKind>,
        page: PageRequest<Uuid>,
    ) -> ApiResult<Page<Organization>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "SELECT {ORGANIZATION_COLUMNS} FROM organizations
                 WHERE ($1::text IS NULL OR kind = $1) AND ($2::uuid IS NULL OR id > $2)
                 ORDER BY id LIMIT $3"
                    ))
                    .await?,
                &[
                    &kind.map(OrganizationKind::as_str),
                    &page.after,
                    &(page.first + 1),
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(organization_from_row)
            .collect::<ApiResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }

    /// Creates a staff account in `organization`. `created_by` is `None` only for the bootstrap
    /// admin made from the command line.
    pub async fn create_staff_user(
        &self,
        organization: Uuid,
        user: NewStaffUser,
        created_by: Option<Uuid>,
    ) -> ApiResult<UserInfo> {
        if user.role == Role::Patient {
            return Err(ApiError::BadUserInput(
                "patients are created with createPatient".into(),
            ));
        }
        check_username(&user.username)?;
        if user.display_name.trim().is_empty() || user.display_name.len() > 200 {
            return Err(ApiError::BadUserInput(
                "displayName must be 1 to 200 characters".into(),
            ));
        }
        if user.specialty.as_ref().is_some_and(|s| s.len() > 200) {
            return Err(ApiError::BadUserInput(
                "specialty is at most 200 characters".into(),
            ));
        }
        let client = self.pool.get().await?;
        let kind: String = client
            .query_opt(
                &client
                    .prepare_cached("SELECT kind FROM organizations WHERE id = $1")
                    .await?,
                &[&organization],
            )
            .await?
            .ok_or(ApiError::NotFound("organization"))?
            .get(0);
        let recipient = OrganizationKind::parse(&kind).filter(|k| *k != OrganizationKind::Hospital);
        if recipient.is_some() && user.role.recipient_kind() != recipient {
            return Err(ApiError::BadUserInput(format!(
                "{} accounts cannot belong to a {kind} organization",
                user.role.as_str()
            )));
        }
        let password_hash = hash_new_password(&user.password).await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(&format!(
                        "INSERT INTO users (id, organization_id, username, role, password_hash,
                                        display_name, specialty, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {USER_COLUMNS}"
                    ))
                    .await?,
                &[
                    &Uuid::now_v7(),
                    &organization,
                    &user.username,
                    &user.role.as_str(),
                    &password_hash,
                    &user.display_name,
                    &user.specialty,
                    &created_by,
                ],
            )
            .await
            .map_err(username_conflict)?;
        user_from_row(&row)
    }

    /// The account named `username`, acting as itself: for an operator's command run on a
    /// user's behalf (`medvault export --requester`), never for a network caller.
    pub async fn actor_by_username(&self, username: &str) -> ApiResult<Actor> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, role, organization_id FROM users WHERE username = $1",
                &[&username],
            )
            .await?
            .ok_or(ApiError::NotFound("user"))?;
        let role: &str = row.get(1);
        Ok(Actor {
            user_id: row.get(0),
            role: Role::parse(role).ok_or_else(|| ApiError::internal(UnknownRole))?,
            organization_id: row.get(2),
        })
    }

    /// One user by id, as any authenticated caller may see them.
    pub async fn user(&self, id: Uuid) -> ApiResult<UserInfo> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .await?,
                &[&id],
            )
            .await?
            .ok_or(ApiError::NotFound("user"))?;
        user_from_row(&row)
    }

    /// The users with these ids (unknown ids are left out).
    pub async fn users(&self, ids: &[Uuid]) -> ApiResult<Vec<UserInfo>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)"
                    ))
                    .await?,
                &[&ids],
            )
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// The doctors of every hospital, for patients choosing whom to grant and for staff.
    pub async fn doctors(
        &self,
        actor: &Actor,
        page: PageRequest<Uuid>,
    ) -> ApiResult<Page<UserInfo>> {
        if !matches!(actor.role, Role::Patient | Role::Admin | Role::Doctor) {
            return Err(ApiError::Forbidden);
        }
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE role = 'doctor'
                     AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
                    ))
                    .await?,
                &[&page.after, &(page.first + 1)],
            )
            .await?;
        let items = rows.iter().map(user_from_row).collect::<ApiResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }
}
