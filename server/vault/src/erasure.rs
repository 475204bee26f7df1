//! Erasing a patient at their request (the right to be forgotten, which an append-only ledger
//! alone cannot give): the data key is destroyed, so every record version and profile version
//! of the patient is unreadable ciphertext; the rows, their anchors and the access log stay, and
//! `audit db` counts the versions as erased rather than tampered with.

use crate::consent::tree::TreeChange;
use crate::error::VaultResult;
use crate::grants::end_consent_sessions;
use crate::{auth::Actor, Vault};
use chrono::{DateTime, Utc};
use rand::RngCore;
use uuid::Uuid;

/// What an erasure did.
#[derive(Clone, Debug)]
pub struct Erasure {
    /// The erased patient.
    pub patient: Uuid,
    /// When.
    pub erased_at: DateTime<Utc>,
    /// The live grants it revoked (their consent leaves are zeroed, their sessions ended).
    pub revoked_grants: usize,
}

impl Vault {
    /// Erases `patient`, of the admin's hospital, in one transaction: deletes the wrapped data
    /// key, records the erasure, replaces the login name and password so nobody signs in as
    /// the patient again, ends their sessions, and revokes their live grants (ending the
    /// consent sessions opened under them and zeroing their consent leaves). The access log
    /// keeps the erasure.
    pub async fn erase_patient(&self, admin: &Actor, patient: Uuid) -> VaultResult<Erasure> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        self.authorize_erasure(&transaction, admin, patient).await?;
        let mut unusable_password = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut unusable_password);
        let unusable_hash =
            crate::users::hash_new_password(&hex::encode(unusable_password)).await?;
        transaction
            .execute(
                "DELETE FROM patient_keys WHERE patient_id = $1",
                &[&patient],
            )
            .await?;
        let erased_at: DateTime<Utc> = transaction
            .query_one(
                "INSERT INTO patient_erasures (patient_id, erased_by) VALUES ($1, $2)
                 RETURNING erased_at",
                &[&patient, &admin.user_id],
            )
            .await?
            .get(0);
        transaction
            .execute(
                "UPDATE users SET username = 'erased-' || id::text, password_hash = $2
                 WHERE id = $1",
                &[&patient, &unusable_hash],
            )
            .await?;
        transaction
            .execute(
                "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
                &[&patient],
            )
            .await?;
        let revoked = transaction
            .query(
                "UPDATE grants SET revoked_at = now()
                 WHERE patient_id = $1 AND revoked_at IS NULL
                 RETURNING id, COALESCE(grantee_id, grantee_organization_id)",
                &[&patient],
            )
            .await?;
        let grants: Vec<Uuid> = revoked.iter().map(|row| row.get(0)).collect();
        end_consent_sessions(&transaction, &grants).await?;
        for row in &revoked {
            self.consent
                .trees
                .apply(
                    &transaction,
                    &self.master,
                    admin.organization_id,
                    TreeChange {
                        revoked_grants: vec![row.get(0)],
                        added: Vec::new(),
                        grantee: row.get(1),
                        patient: Some(patient),
                    },
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(Erasure {
            patient,
            erased_at,
            revoked_grants: grants.len(),
        })
    }
}
