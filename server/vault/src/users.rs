//! Organizations (member hospitals and export recipients) and their users. Staff names are not health data and are stored in
//! the clear; a patient's identity lives only in their encrypted profile.

use crate::auth::{self, Actor, Operator};
use crate::domain::{OrganizationKind, Role};
use crate::error::{VaultError, VaultResult};
use crate::policy::{self, require_role};
use crate::{Page, PageRequest, Vault};
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

fn organization_from_row(row: &Row) -> VaultResult<Organization> {
    Ok(Organization {
        id: row.get(0),
        name: row.get(1),
        kind: OrganizationKind::parse(row.get(2))
            .ok_or_else(|| VaultError::internal(UnknownKind))?,
        created_at: row.get(3),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("a stored organization has an unknown kind")]
struct UnknownKind;

fn check_organization_name(name: &str) -> VaultResult<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(VaultError::InvalidInput(
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

fn user_from_row(row: &Row) -> VaultResult<UserInfo> {
    let role: &str = row.get(2);
    Ok(UserInfo {
        id: row.get(0),
        username: row.get(1),
        role: Role::parse(role).ok_or_else(|| VaultError::internal(UnknownRole))?,
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
pub(crate) async fn hash_new_password(password: &str) -> VaultResult<String> {
    auth::check_new_password(password)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(VaultError::internal)?
}

/// Maps a unique violation on `users.username` to CONFLICT.
pub(super) fn username_conflict(error: tokio_postgres::Error) -> VaultError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        VaultError::Conflict("username is taken".into())
    } else {
        error.into()
    }
}

pub(super) fn check_username(username: &str) -> VaultResult<()> {
    let valid = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(VaultError::InvalidInput(
            "username must be 3 to 64 characters of letters, digits and . _ - @".into(),
        ))
    }
}

impl Vault {
    /// The operator's bootstrap (`medvault admin create`): registers the hospital `hospital`
    /// unless it exists, and creates an admin in it; refused, saying how to propose it, unless
    /// the vault's chain has admitted the hospital as a member.
    pub async fn create_hospital_admin(
        &self,
        _operator: &Operator,
        hospital: &str,
        admin: NewStaffUser,
    ) -> VaultResult<(Organization, UserInfo)> {
        if admin.role != Role::Admin {
            return Err(VaultError::InvalidInput(
                "the bootstrap account of a hospital is an admin".into(),
            ));
        }
        check_organization_name(hospital)?;
        if let Some(chain) = &self.chain {
            crate::anchoring::membership::check_admitted(chain, hospital).await?;
        }
        let organization = self.ensure_organization(hospital).await?;
        let admin = self.insert_staff_user(organization.id, admin, None).await?;
        Ok((organization, admin))
    }

    /// Registers a hospital, or returns the existing one of that name.
    async fn ensure_organization(&self, name: &str) -> VaultResult<Organization> {
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
    ) -> VaultResult<Organization> {
        require_role(admin, Role::Admin)?;
        check_organization_name(name)?;
        if kind == OrganizationKind::Hospital {
            return Err(VaultError::InvalidInput(
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
                    VaultError::Conflict("an organization of that name exists".into())
                } else {
                    error.into()
                }
            })?;
        organization_from_row(&row)
    }

    /// One organization by id, for any signed-in `viewer` (organizations hold no health data).
    pub async fn organization(&self, _viewer: &Actor, id: Uuid) -> VaultResult<Organization> {
        self.organization_by_id(id).await
    }

    async fn organization_by_id(&self, id: Uuid) -> VaultResult<Organization> {
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
            .ok_or(VaultError::NotFound("organization"))?;
        organization_from_row(&row)
    }

    /// Organizations by id, all of them or those of one kind, for any signed-in `viewer`.
    pub async fn organizations(
        &self,
        _viewer: &Actor,
        kind: Option<OrganizationKind>,
        page: PageRequest<Uuid>,
    ) -> VaultResult<Page<Organization>> {
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
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }

    /// An admin creates a staff account in their own hospital, or in a recipient organization
    /// (`organization`), as [`policy::may_create_staff_in`] allows.
    pub async fn create_staff_user(
        &self,
        admin: &Actor,
        organization: Option<Uuid>,
        user: NewStaffUser,
    ) -> VaultResult<UserInfo> {
        require_role(admin, Role::Admin)?;
        let organization = match organization {
            Some(id) if id != admin.organization_id => {
                let target = self.organization_by_id(id).await?;
                policy::may_create_staff_in(admin, target.id, target.kind)?;
                target.id
            }
            _ => admin.organization_id,
        };
        self.insert_staff_user(organization, user, Some(admin.user_id))
            .await
    }

    /// Creates a staff account in `organization`; `created_by` is `None` only for the bootstrap
    /// admin.
    async fn insert_staff_user(
        &self,
        organization: Uuid,
        user: NewStaffUser,
        created_by: Option<Uuid>,
    ) -> VaultResult<UserInfo> {
        if user.role == Role::Patient {
            return Err(VaultError::InvalidInput(
                "patients are created with createPatient".into(),
            ));
        }
        check_username(&user.username)?;
        if user.display_name.trim().is_empty() || user.display_name.len() > 200 {
            return Err(VaultError::InvalidInput(
                "displayName must be 1 to 200 characters".into(),
            ));
        }
        if user.specialty.as_ref().is_some_and(|s| s.len() > 200) {
            return Err(VaultError::InvalidInput(
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
            .ok_or(VaultError::NotFound("organization"))?
            .get(0);
        let recipient = OrganizationKind::parse(&kind).filter(|k| *k != OrganizationKind::Hospital);
        if recipient.is_some() && user.role.recipient_kind() != recipient {
            return Err(VaultError::InvalidInput(format!(
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
    pub async fn actor_by_username(
        &self,
        _operator: &Operator,
        username: &str,
    ) -> VaultResult<Actor> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, role, organization_id FROM users WHERE username = $1",
                &[&username],
            )
            .await?
            .ok_or(VaultError::NotFound("user"))?;
        let role: &str = row.get(1);
        Ok(Actor {
            user_id: row.get(0),
            role: Role::parse(role).ok_or_else(|| VaultError::internal(UnknownRole))?,
            organization_id: row.get(2),
            session: None,
        })
    }

    /// One user by id, as any signed-in `viewer` may see them.
    pub async fn user(&self, _viewer: &Actor, id: Uuid) -> VaultResult<UserInfo> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .await?,
                &[&id],
            )
            .await?
            .ok_or(VaultError::NotFound("user"))?;
        user_from_row(&row)
    }

    /// The users with these ids (unknown ids are left out), as any signed-in `viewer` may see
    /// them.
    pub async fn users(&self, _viewer: &Actor, ids: &[Uuid]) -> VaultResult<Vec<UserInfo>> {
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
    ) -> VaultResult<Page<UserInfo>> {
        if !matches!(actor.role, Role::Patient | Role::Admin | Role::Doctor) {
            return Err(VaultError::Forbidden);
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
        let items = rows.iter().map(user_from_row).collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }
}
