//! Consent proofs in front of every doctor's access (MISSION.md decisions 4, 5 and 10).
//!
//! A doctor keeps a grantee secret on their own machine and registers only its commitment
//! ([`Vault::register_grantee_key`]). A patient's grant is a leaf of their hospital's consent tree
//! ([`tree`]). To open a patient's data the doctor asks for a single-use challenge bound to their
//! bearer session ([`Vault::consent_challenge`]) and for their leaf's private fields and path
//! ([`Vault::consent_witness`]), proves on their side, and [`Vault::open_consent`] verifies the
//! proof against an anchored root of the tree: the verified proof opens a consent session, the
//! only thing the policy accepts for a doctor's read or write, and stays in the database as the
//! evidence [`audit`] checks without trusting this server.

pub mod audit;
pub mod keys;
pub(crate) mod tree;

use crate::auth::Actor;
use crate::domain::{AccessScope, Role};
use crate::error::{VaultError, VaultResult};
use crate::policy::{require_role, AuditedAction, LogLine};
use crate::{Page, PageRequest, Vault};
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use keys::ConsentKeys;
use medvault_circuits::field::field_to_bytes;
use medvault_circuits::{
    random_field_element, ConsentProof, Fr, MerklePath, OsRng, PublicInputs, Scope,
};
use std::sync::Arc;
use tree::{stored_field, unix_seconds, ConsentTrees, TreeMismatch};
use uuid::Uuid;

pub use tree::consent_root_entry;
pub use tree::TreeMismatch as ConsentTreeMismatch;

/// How long the steps of the proof flow may take.
#[derive(Clone, Copy, Debug)]
pub struct ConsentSettings {
    /// How long a challenge may be answered; the proof's `now` is the challenge's, so this is
    /// also the most a proof's time may lag the server's.
    pub challenge_ttl: Duration,
    /// How long a root stays acceptable after a change replaced it, when the change touched
    /// neither the doctor nor the patient: a doctor proving while other patients' grants change
    /// is not sent back to start.
    pub root_window: Duration,
    /// How long a consent session lasts at most (it ends sooner with its grant).
    pub session_ttl: Duration,
    /// How long opening waits for the proof's root to be anchored before refusing; `None` for
    /// a process with no chain, which accepts roots still in the outbox (`medvault audit
    /// access` then reports every access they opened).
    pub anchoring_wait: Option<std::time::Duration>,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            challenge_ttl: Duration::seconds(60),
            root_window: Duration::seconds(10),
            session_ttl: Duration::minutes(15),
            anchoring_wait: Some(std::time::Duration::from_secs(3)),
        }
    }
}

/// What the vault's consent side is opened with.
#[derive(Clone, Debug)]
pub struct ConsentConfig {
    /// The directory of the circuit's keys.
    pub keys_dir: std::path::PathBuf,
    /// The depth of development keys made there when it holds none.
    pub depth_if_created: u32,
    /// The flow's time limits.
    pub settings: ConsentSettings,
}

/// The stored consent state cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentStartError {
    /// A tree does not match its grants or its root.
    #[error(transparent)]
    Tree(#[from] TreeMismatch),
    /// The keys are for another depth than the stored trees.
    #[error(
        "the consent keys are for trees of depth {keys}, but the stored consent trees have depth \
         {stored}; start with the keys the trees were made for"
    )]
    Depth {
        /// The keys' depth.
        keys: u32,
        /// The stored trees' depth.
        stored: i32,
    },
    /// The database could not be read.
    #[error("reading the consent trees")]
    Database(#[from] tokio_postgres::Error),
    /// A stored value is unreadable.
    #[error("reading the consent trees")]
    Stored(#[from] VaultError),
    /// The keys could not be loaded or made.
    #[error(transparent)]
    Keys(#[from] keys::ConsentKeyError),
}

/// The vault's consent side: keys, trees and limits.
pub(crate) struct Consent {
    pub keys: Arc<ConsentKeys>,
    pub trees: ConsentTrees,
    pub settings: ConsentSettings,
}

impl Consent {
    /// Loads and checks the trees and records the verifying key (queuing its anchor the first
    /// time it is used).
    pub(crate) async fn open(
        client: &impl GenericClient,
        master: &crate::crypto::MasterKey,
        config: ConsentConfig,
    ) -> Result<Consent, ConsentStartError> {
        let dir = config.keys_dir.clone();
        let depth = config.depth_if_created;
        let keys = tokio::task::spawn_blocking(move || ConsentKeys::load_or_create(&dir, depth))
            .await
            .map_err(VaultError::internal)??;
        let keys = Arc::new(keys);
        let trees = ConsentTrees::load_checked(client, master, keys.depth()).await?;
        let known = client
            .query_opt(
                "SELECT 1 FROM consent_verifying_keys WHERE key_sha3 = $1",
                &[&keys.verifying_key_sha3().as_slice()],
            )
            .await?
            .is_some();
        if !known {
            let outbox_id = crate::anchoring::outbox::queue(
                client,
                &keys::verifying_key_entry(keys.verifying_key_sha3(), keys.depth()),
            )
            .await?;
            client
                .execute(
                    "INSERT INTO consent_verifying_keys
                       (key_sha3, depth, verifying_key, anchor_outbox_id)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (key_sha3) DO NOTHING",
                    &[
                        &keys.verifying_key_sha3().as_slice(),
                        &i32::try_from(keys.depth()).unwrap_or(i32::MAX),
                        &keys.verifying_key_bytes(),
                        &outbox_id,
                    ],
                )
                .await?;
        }
        Ok(Consent {
            keys,
            trees,
            settings: config.settings,
        })
    }
}

/// The keys in use, as `consentKeys` shows them.
#[derive(Clone, Debug)]
pub struct ConsentKeysInfo {
    /// The trees' depth (4-ary levels).
    pub depth: u32,
    /// SHA3-256 of the verifying key file.
    pub verifying_key_sha3: [u8; 32],
    /// The chain height its `VerifyingKey` entry was anchored at, once it is.
    pub anchored_height: Option<i64>,
    /// SHA3-256 of the proving key file.
    pub proving_key_sha3: [u8; 32],
}

/// A doctor's registered grantee key.
#[derive(Clone, Debug)]
pub struct GranteeKey {
    /// The commitment.
    pub commitment: Fr,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
    /// How many live grants were moved to it from a previous key.
    pub rekeyed_grants: i64,
}

/// A single-use challenge for one proof.
#[derive(Clone, Debug)]
pub struct ConsentChallenge {
    /// The challenge.
    pub challenge: Fr,
    /// The time (Unix seconds) the proof must show the grant valid at: the server's now.
    pub now: u64,
    /// When it can no longer be answered.
    pub expires_at: DateTime<Utc>,
    /// The patient's pseudonym, a public input of the proof.
    pub patient_pseudonym: Fr,
    /// The scope the proof must cover.
    pub required_scope: Scope,
}

/// What a doctor needs to prove their grant: the leaf's private fields and its path.
#[derive(Clone, Debug)]
pub struct ConsentWitnessView {
    /// The root the path leads to.
    pub root: Fr,
    /// The tree's sequence at that root.
    pub sequence: i64,
    /// The tree's depth.
    pub depth: u32,
    /// The patient's pseudonym.
    pub patient_pseudonym: Fr,
    /// The scope the grant gives.
    pub granted_scope: Scope,
    /// The grant's expiry, Unix seconds.
    pub expiry: u64,
    /// The leaf's salt.
    pub salt: Fr,
    /// The authentication path.
    pub path: MerklePath,
}

/// An open consent session.
#[derive(Clone, Debug)]
pub struct ConsentSession {
    /// Its id, which the access log names.
    pub id: Uuid,
    /// Whose data it opens.
    pub patient_id: Uuid,
    /// What it allows.
    pub scopes: Vec<AccessScope>,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
}

/// One verified proof as the auditor sees it: no health data, the patient by pseudonym.
#[derive(Clone, Debug)]
pub struct AccessProof {
    /// The consent session it opened.
    pub session_id: Uuid,
    /// When.
    pub opened_at: DateTime<Utc>,
    /// Who proved.
    pub doctor_id: Uuid,
    /// Whose tree the root is of.
    pub hospital_id: Uuid,
    /// The tree sequence of the root.
    pub root_sequence: i64,
    /// The public inputs (root, pseudonym, scope, now, challenge), canonical bytes.
    pub public_inputs: PublicInputs,
    /// The proof's bytes.
    pub proof: Vec<u8>,
    /// SHA3-256 of the verifying key it was verified with.
    pub verifying_key_sha3: [u8; 32],
    /// How many accesses named the session.
    pub accesses: i64,
}

/// The scopes a doctor may open a session for, as a mask; BAD_USER_INPUT otherwise.
fn doctor_scope(scopes: &[AccessScope]) -> VaultResult<Scope> {
    if scopes.is_empty() {
        return Err(VaultError::InvalidInput("give at least one scope".into()));
    }
    if scopes.contains(&AccessScope::Research) {
        return Err(VaultError::InvalidInput(
            "consent sessions are for READ and WRITE; research consent is never proved by a \
             doctor"
                .into(),
        ));
    }
    let mask = AccessScope::mask(scopes);
    Ok(Scope::from_bits(u16::try_from(mask).unwrap_or(0)))
}

impl Vault {
    /// The consent keys in use and where the verifying key is anchored; public.
    pub async fn consent_keys(&self) -> VaultResult<ConsentKeysInfo> {
        let keys = &self.consent.keys;
        let client = self.pool.get().await?;
        let anchored_height = client
            .query_opt(
                "SELECT o.anchored_height FROM consent_verifying_keys k
                 JOIN anchor_outbox o ON o.id = k.anchor_outbox_id WHERE k.key_sha3 = $1",
                &[&keys.verifying_key_sha3().as_slice()],
            )
            .await?
            .and_then(|row| row.get(0));
        Ok(ConsentKeysInfo {
            depth: keys.depth(),
            verifying_key_sha3: keys.verifying_key_sha3(),
            anchored_height,
            proving_key_sha3: keys.proving_key_sha3(),
        })
    }

    /// The proving key file doctors' clients prove with; public.
    pub fn consent_proving_key(&self) -> Arc<[u8]> {
        self.consent.keys.proving_key_bytes()
    }

    /// A doctor registers the commitment to a secret only they hold. Registering a new one
    /// re-keys the doctor's live grants: each gets a new leaf under the new commitment and the
    /// old leaf is zeroed, so the old secret proves nothing from then on.
    pub async fn register_grantee_key(
        &self,
        doctor: &Actor,
        commitment: Fr,
    ) -> VaultResult<GranteeKey> {
        require_role(doctor, Role::Doctor)?;
        let commitment_bytes = field_to_bytes(commitment);
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let previous: Option<Vec<u8>> = transaction
            .query_opt(
                "SELECT commitment FROM grantee_keys WHERE user_id = $1 FOR UPDATE",
                &[&doctor.user_id],
            )
            .await?
            .map(|row| row.get(0));
        let row = transaction
            .query_one(
                "INSERT INTO grantee_keys (user_id, commitment) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET commitment = $2, registered_at = now()
                 RETURNING registered_at",
                &[&doctor.user_id, &commitment_bytes.as_slice()],
            )
            .await?;
        let registered_at = row.get(0);
        let mut rekeyed_grants = 0;
        if previous.is_some_and(|previous| previous != commitment_bytes) {
            let live = transaction
                .query(
                    &format!(
                        "SELECT l.hospital_id, {} FROM consent_leaves l
                         JOIN grants g ON g.id = l.grant_id
                         WHERE g.grantee_id = $1 AND l.revoked_sequence IS NULL
                           AND g.revoked_at IS NULL AND g.expires_at > now()
                         ORDER BY l.hospital_id, l.leaf_index",
                        crate::grants::GRANT_COLUMNS_OF_G
                    ),
                    &[&doctor.user_id],
                )
                .await?;
            let mut by_hospital: std::collections::BTreeMap<Uuid, Vec<crate::grants::Grant>> =
                Default::default();
            for row in &live {
                by_hospital
                    .entry(row.get(0))
                    .or_default()
                    .push(crate::grants::grant_from_row_at(row, 1));
            }
            for (hospital, grants) in by_hospital {
                rekeyed_grants += grants.len() as i64;
                self.consent
                    .trees
                    .apply(
                        &transaction,
                        &self.master,
                        hospital,
                        tree::TreeChange {
                            revoked_grants: grants.iter().map(|grant| grant.id).collect(),
                            added: grants
                                .into_iter()
                                .map(|grant| (grant, commitment))
                                .collect(),
                            grantee: doctor.user_id,
                            patient: None,
                        },
                    )
                    .await?;
            }
        }
        transaction.commit().await?;
        Ok(GranteeKey {
            commitment,
            registered_at,
            rekeyed_grants,
        })
    }

    /// A single-use challenge for the calling doctor's bearer session, for a proof about
    /// `patient` covering `scopes`. Issued for any id, so that it reveals nothing of who is a
    /// patient.
    pub async fn consent_challenge(
        &self,
        doctor: &Actor,
        patient: Uuid,
        scopes: &[AccessScope],
    ) -> VaultResult<ConsentChallenge> {
        require_role(doctor, Role::Doctor)?;
        let session = doctor.session.ok_or(VaultError::Unauthenticated(
            "sign in to ask for a challenge",
        ))?;
        let required_scope = doctor_scope(scopes)?;
        let challenge = random_field_element(&mut OsRng);
        let issued_at = Utc::now();
        let expires_at = issued_at + self.consent.settings.challenge_ttl;
        let client = self.pool.get().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "WITH expired AS (
                           DELETE FROM consent_challenges WHERE challenge IN (
                             SELECT challenge FROM consent_challenges
                             WHERE expires_at < now() - interval '1 minute' LIMIT 16))
                         INSERT INTO consent_challenges
                           (challenge, session_sha256, patient_id, scope, issued_at, expires_at)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .await?,
                &[
                    &field_to_bytes(challenge).as_slice(),
                    &session.as_slice(),
                    &patient,
                    &i32::from(required_scope.bits()),
                    &issued_at,
                    &expires_at,
                ],
            )
            .await?;
        Ok(ConsentChallenge {
            challenge,
            now: unix_seconds(issued_at),
            expires_at,
            patient_pseudonym: self.master.patient_consent_pseudonym(patient),
            required_scope,
        })
    }

    /// The calling doctor's own leaf for `patient`, its private fields and its path to the
    /// current root: FORBIDDEN unless the doctor holds a live grant from the patient.
    pub async fn consent_witness(
        &self,
        doctor: &Actor,
        patient: Uuid,
    ) -> VaultResult<ConsentWitnessView> {
        require_role(doctor, Role::Doctor)?;
        let mut client = self.pool.get().await?;
        // One snapshot for the leaf, the tree's state and, if the memory copy is stale, the
        // leaves it is rebuilt from, whatever other servers commit meanwhile.
        let snapshot = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let row = snapshot
            .query_opt(
                &snapshot
                    .prepare_cached(
                        "SELECT l.hospital_id, l.leaf_index, l.salt, g.scope, g.expires_at
                         FROM consent_leaves l JOIN grants g ON g.id = l.grant_id
                         WHERE g.patient_id = $1 AND g.grantee_id = $2
                           AND g.revoked_at IS NULL AND g.expires_at > now()
                           AND l.revoked_sequence IS NULL",
                    )
                    .await?,
                &[&patient, &doctor.user_id],
            )
            .await?
            .ok_or(VaultError::Forbidden)?;
        let hospital: Uuid = row.get(0);
        let index: i64 = row.get(1);
        let scope: i32 = row.get(3);
        let expires_at: DateTime<Utc> = row.get(4);
        let at = self
            .consent
            .trees
            .path(
                &snapshot,
                hospital,
                u64::try_from(index).map_err(VaultError::internal)?,
            )
            .await?;
        snapshot.commit().await?;
        Ok(ConsentWitnessView {
            root: at.root,
            sequence: at.sequence,
            depth: self.consent.trees.depth(),
            patient_pseudonym: self.master.patient_consent_pseudonym(patient),
            granted_scope: Scope::from_bits(u16::try_from(scope).map_err(VaultError::internal)?),
            expiry: unix_seconds(expires_at),
            salt: stored_field("consent salt", row.get(2))?,
            path: at.path,
        })
    }

    /// Verifies a doctor's consent proof and opens a consent session for their bearer session,
    /// `patient` and `scopes`. Every refusal is logged with its reason and answered FORBIDDEN,
    /// or BAD_USER_INPUT for bytes that are not a proof.
    pub async fn open_consent(
        &self,
        doctor: &Actor,
        patient: Uuid,
        scopes: &[AccessScope],
        challenge: Fr,
        root: Fr,
        proof: &[u8],
    ) -> VaultResult<ConsentSession> {
        let outcome = self
            .verify_consent(doctor, patient, scopes, challenge, root, proof)
            .await;
        let (reason, answer) = match outcome {
            Ok(session) => return Ok(session),
            Err(Refusal::Failed(error)) => return Err(error),
            Err(Refusal::Denied(reason)) => (reason, VaultError::Forbidden),
            Err(Refusal::Malformed(message)) => (
                "the proof is not well-formed",
                VaultError::InvalidInput(message),
            ),
        };
        self.log_access(
            doctor,
            Some(patient),
            AuditedAction::OpenConsent,
            None,
            Err(reason),
        )
        .await?;
        Err(answer)
    }

    async fn verify_consent(
        &self,
        doctor: &Actor,
        patient: Uuid,
        scopes: &[AccessScope],
        challenge: Fr,
        root: Fr,
        proof: &[u8],
    ) -> Result<ConsentSession, Refusal> {
        if doctor.role != Role::Doctor {
            return Err(Refusal::Denied("only doctors open consent sessions"));
        }
        let session = doctor.session.ok_or(Refusal::Denied("no bearer session"))?;
        let required_scope = doctor_scope(scopes).map_err(Refusal::Failed)?;
        let proof = ConsentProof::from_bytes(proof)
            .map_err(|error| Refusal::Malformed(format!("proof: {error}")))?;
        let client = self.pool.get().await.map_err(Refusal::internal)?;
        let challenge_bytes = field_to_bytes(challenge);
        let issued = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT session_sha256, patient_id, scope, issued_at, expires_at, used_at
                         FROM consent_challenges WHERE challenge = $1",
                    )
                    .await
                    .map_err(Refusal::internal)?,
                &[&challenge_bytes.as_slice()],
            )
            .await
            .map_err(Refusal::internal)?
            .ok_or(Refusal::Denied("unknown challenge"))?;
        let issued_session: Vec<u8> = issued.get(0);
        let issued_patient: Uuid = issued.get(1);
        let issued_scope: i32 = issued.get(2);
        let issued_at: DateTime<Utc> = issued.get(3);
        let expires_at: DateTime<Utc> = issued.get(4);
        let used_at: Option<DateTime<Utc>> = issued.get(5);
        if used_at.is_some() {
            return Err(Refusal::Denied("the challenge was already used"));
        }
        if issued_session != session {
            return Err(Refusal::Denied(
                "the challenge was issued to another session",
            ));
        }
        if issued_patient != patient || issued_scope != i32::from(required_scope.bits()) {
            return Err(Refusal::Denied(
                "the challenge was issued for another patient or scope",
            ));
        }
        if expires_at <= Utc::now() {
            return Err(Refusal::Denied("the challenge has expired"));
        }
        let hospital: Uuid = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT organization_id FROM users WHERE id = $1 AND role = 'patient'",
                    )
                    .await
                    .map_err(Refusal::internal)?,
                &[&patient],
            )
            .await
            .map_err(Refusal::internal)?
            .ok_or(Refusal::Denied("no such patient"))?
            .get(0);
        let accepted = self
            .accepted_root(&client, hospital, root, doctor.user_id, patient)
            .await?;
        let public = PublicInputs {
            root,
            patient_pseudonym: self.master.patient_consent_pseudonym(patient),
            required_scope,
            now: unix_seconds(issued_at),
            challenge,
        };
        let keys = self.consent.keys.clone();
        let checked_proof = proof.clone();
        let verified = tokio::task::spawn_blocking(move || {
            medvault_circuits::verify(keys.verifying(), &public, &checked_proof)
        })
        .await
        .map_err(|error| Refusal::Failed(VaultError::internal(error)))?
        .map_err(|error| Refusal::Malformed(format!("proof: {error}")))?;
        if !verified {
            return Err(Refusal::Denied("the proof does not verify"));
        }
        let mut client = client;
        let transaction = client.transaction().await.map_err(Refusal::internal)?;
        let spent = transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "UPDATE consent_challenges SET used_at = now()
                         WHERE challenge = $1 AND used_at IS NULL",
                    )
                    .await
                    .map_err(Refusal::internal)?,
                &[&challenge_bytes.as_slice()],
            )
            .await
            .map_err(Refusal::internal)?;
        if spent != 1 {
            return Err(Refusal::Denied("the challenge was already used"));
        }
        let grant = transaction
            .query_opt(
                &transaction
                    .prepare_cached(
                        "SELECT id, expires_at FROM grants
                         WHERE patient_id = $1 AND grantee_id = $2 AND revoked_at IS NULL
                           AND expires_at > now() AND scope & $3 = $3",
                    )
                    .await
                    .map_err(Refusal::internal)?,
                &[&patient, &doctor.user_id, &i32::from(required_scope.bits())],
            )
            .await
            .map_err(Refusal::internal)?;
        let Some(grant) = grant else {
            transaction.commit().await.map_err(Refusal::internal)?;
            return Err(Refusal::Denied("no live grant with the required scope"));
        };
        let grant_id: Uuid = grant.get(0);
        let grant_expires_at: DateTime<Utc> = grant.get(1);
        let opened_at = Utc::now();
        let session_expires_at =
            grant_expires_at.min(opened_at + self.consent.settings.session_ttl);
        let id = Uuid::now_v7();
        transaction
            .execute(
                &transaction
                    .prepare_cached(
                        "INSERT INTO consent_sessions
                           (id, session_sha256, doctor_id, patient_id, hospital_id, grant_id,
                            scope, opened_at, expires_at, root_sequence, verifying_key_sha3,
                            public_inputs, proof)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .await
                    .map_err(Refusal::internal)?,
                &[
                    &id,
                    &session.as_slice(),
                    &doctor.user_id,
                    &patient,
                    &hospital,
                    &grant_id,
                    &i32::from(required_scope.bits()),
                    &opened_at,
                    &session_expires_at,
                    &accepted,
                    &self.consent.keys.verifying_key_sha3().as_slice(),
                    &public.to_bytes(),
                    &proof.to_bytes(),
                ],
            )
            .await
            .map_err(Refusal::internal)?;
        LogLine {
            actor: doctor,
            patient: Some(patient),
            action: AuditedAction::OpenConsent,
            record: None,
            decision: Ok(()),
            consent_session: Some(id),
            note: None,
        }
        .append(&transaction)
        .await
        .map_err(Refusal::Failed)?;
        transaction.commit().await.map_err(Refusal::internal)?;
        Ok(ConsentSession {
            id,
            patient_id: patient,
            scopes: AccessScope::from_mask(i32::from(required_scope.bits())),
            opened_at,
            expires_at: session_expires_at,
        })
    }

    /// The sequence of `root` in `hospital`'s tree if a proof against it is accepted now: the
    /// current root, or one replaced less than the window ago by changes that touched neither
    /// this doctor nor this patient; and anchored (waiting a little for the anchoring worker).
    async fn accepted_root(
        &self,
        client: &impl GenericClient,
        hospital: Uuid,
        root: Fr,
        doctor: Uuid,
        patient: Uuid,
    ) -> Result<i64, Refusal> {
        let window_start = Utc::now() - self.consent.settings.root_window;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT r.sequence, r.anchor_outbox_id,
                                (SELECT n.recorded_at FROM consent_roots n
                                 WHERE n.hospital_id = r.hospital_id AND n.sequence = r.sequence + 1),
                                EXISTS (SELECT 1 FROM consent_roots c
                                        WHERE c.hospital_id = r.hospital_id
                                          AND c.sequence > r.sequence AND c.grantee_id = $3
                                          AND (c.patient_id = $4 OR c.patient_id IS NULL))
                         FROM consent_roots r WHERE r.hospital_id = $1 AND r.root = $2
                         ORDER BY r.sequence DESC LIMIT 1",
                    )
                    .await
                    .map_err(Refusal::internal)?,
                &[&hospital, &field_to_bytes(root).as_slice(), &doctor, &patient],
            )
            .await
            .map_err(Refusal::internal)?
            .ok_or(Refusal::Denied(
                "the root is not a root of the patient's hospital's consent tree",
            ))?;
        let sequence: i64 = row.get(0);
        let outbox_id: i64 = row.get(1);
        let replaced_at: Option<DateTime<Utc>> = row.get(2);
        let touched_since: bool = row.get(3);
        if touched_since {
            return Err(Refusal::Denied(
                "the consent between this doctor and patient changed since the root",
            ));
        }
        if replaced_at.is_some_and(|replaced_at| replaced_at < window_start) {
            return Err(Refusal::Denied(
                "the root is older than the accepted window",
            ));
        }
        let Some(wait) = self.consent.settings.anchoring_wait else {
            return Ok(sequence);
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let anchored: Option<i64> = client
                .query_one(
                    &client
                        .prepare_cached("SELECT anchored_height FROM anchor_outbox WHERE id = $1")
                        .await
                        .map_err(Refusal::internal)?,
                    &[&outbox_id],
                )
                .await
                .map_err(Refusal::internal)?
                .get(0);
            if anchored.is_some() {
                return Ok(sequence);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Refusal::Failed(VaultError::Conflict(
                    "the consent root is not anchored yet; ask for a new witness and try again \
                     in a moment"
                        .into(),
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// `patient`'s consent pseudonym, for the patient and for doctors holding a live grant from
    /// them; FORBIDDEN for anyone else.
    pub async fn patient_pseudonym(&self, viewer: &Actor, patient: Uuid) -> VaultResult<Fr> {
        let allowed = match viewer.role {
            Role::Patient => viewer.user_id == patient,
            Role::Doctor => {
                let client = self.pool.get().await?;
                client
                    .query_opt(
                        &client
                            .prepare_cached(
                                "SELECT 1 FROM grants WHERE patient_id = $1 AND grantee_id = $2
                                 AND revoked_at IS NULL AND expires_at > now()",
                            )
                            .await?,
                        &[&patient, &viewer.user_id],
                    )
                    .await?
                    .is_some()
            }
            _ => false,
        };
        if !allowed {
            return Err(VaultError::Forbidden);
        }
        Ok(self.master.patient_consent_pseudonym(patient))
    }

    /// Every verified consent proof, oldest first, for auditors.
    pub async fn access_proofs(
        &self,
        auditor: &Actor,
        page: PageRequest<Uuid>,
    ) -> VaultResult<Page<AccessProof>> {
        require_role(auditor, Role::Auditor)?;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.opened_at, s.doctor_id, s.hospital_id, s.root_sequence,
                        s.public_inputs, s.proof, s.verifying_key_sha3,
                        (SELECT count(*) FROM access_log a WHERE a.consent_session_id = s.id
                           AND a.action <> 'open_consent')
                 FROM consent_sessions s WHERE ($1::uuid IS NULL OR s.id > $1)
                 ORDER BY s.id LIMIT $2",
                &[&page.after, &(page.first + 1)],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let public: Vec<u8> = row.get(5);
                let key: Vec<u8> = row.get(7);
                Ok(AccessProof {
                    session_id: row.get(0),
                    opened_at: row.get(1),
                    doctor_id: row.get(2),
                    hospital_id: row.get(3),
                    root_sequence: row.get(4),
                    public_inputs: PublicInputs::from_bytes(&public)
                        .map_err(VaultError::internal)?,
                    proof: row.get(6),
                    verifying_key_sha3: key.try_into().map_err(|_| {
                        VaultError::internal(audit::UnreadableEvidence("verifying key hash"))
                    })?,
                    accesses: row.get(8),
                })
            })
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }
}

/// Why opening was refused, before it is logged.
enum Refusal {
    /// Refused for this reason: logged, answered FORBIDDEN.
    Denied(&'static str),
    /// The proof's bytes are not a proof: logged, answered BAD_USER_INPUT.
    Malformed(String),
    /// Answered as it is, without a log line: bad arguments, a root not anchored yet (the
    /// client retries), or a failure of the server's own.
    Failed(VaultError),
}

impl Refusal {
    fn internal(error: impl Into<VaultError>) -> Refusal {
        Refusal::Failed(error.into())
    }
}
