//! Consent on the doctor's side: the server's challenge and the doctor's grant decoded from the
//! contract's JSON into the circuit's types, checked natively, and proved. The secret goes into
//! the witness and nowhere else; what leaves the machine is the proof, the root and the
//! challenge.

use crate::error::{ClientError, StatementError};
use crate::graphql::take;
use medvault_circuits::field::{field_from_hex, field_to_hex};
use medvault_circuits::tree::SIBLINGS_PER_LEVEL;
use medvault_circuits::{
    ConsentProof, ConsentProvingKey, ConsentWitness, Fr, GranteeSecret, MerklePath, PublicInputs,
    Scope,
};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;

/// A scope a doctor opens a consent session for: GraphQL's `AccessScope` without `RESEARCH`,
/// which patients give to organizations and no doctor opens. The bits are the circuit's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccessScope {
    /// View records, details and history ([`Scope::READ`]).
    Read,
    /// Add, update and delete records ([`Scope::WRITE`]).
    Write,
}

impl AccessScope {
    /// The circuit's scope bit.
    pub const fn scope(self) -> Scope {
        match self {
            AccessScope::Read => Scope::READ,
            AccessScope::Write => Scope::WRITE,
        }
    }

    /// The mask a request for `scopes` needs: the union of their bits.
    pub fn mask(scopes: &[AccessScope]) -> Scope {
        scopes
            .iter()
            .fold(Scope::default(), |mask, scope| mask | scope.scope())
    }
}

/// The GraphQL spelling, `READ` or `WRITE`.
impl fmt::Display for AccessScope {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            AccessScope::Read => "READ",
            AccessScope::Write => "WRITE",
        })
    }
}

/// `consentKeys`: the keys the server verifies consent proofs with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentKeys {
    /// Depth of the consent trees the keys are for.
    pub depth: u32,
    /// SHA3-256 of the verifying key file, hex.
    pub verifying_key_hash: String,
    /// Height of the anchor chain block that records the verifying key, once anchored.
    pub anchored_height: Option<u64>,
    /// Path on the same server to download the proving key file from.
    pub proving_key_url: String,
    /// SHA3-256 of the proving key file: 64 lowercase hex digits.
    pub proving_key_hash: String,
}

/// `consentChallenge`: what the server will verify a proof against, besides the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChallenge {
    /// The single-use challenge the proof is bound to.
    pub challenge: Fr,
    /// The time (Unix seconds) at which the proof must show the grant valid.
    pub now: u64,
    /// When the challenge stops being accepted (RFC 3339, as the server wrote it).
    pub expires_at: String,
    /// The patient's pseudonym, as the tree's leaves commit to it.
    pub patient_pseudonym: Fr,
    /// The scope mask the proof must show covered.
    pub required_scope: Scope,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeAnswer {
    challenge: String,
    now: u64,
    expires_at: String,
    patient_pseudonym: String,
    required_scope: u16,
}

impl ConsentChallenge {
    /// Decodes the `consentChallenge` field of an answer's data.
    pub(crate) fn from_data(data: Value) -> Result<Self, ClientError> {
        let answer: ChallengeAnswer = take(data, "consentChallenge")?;
        Ok(ConsentChallenge {
            challenge: field("consentChallenge.challenge", &answer.challenge)?,
            now: answer.now,
            expires_at: answer.expires_at,
            patient_pseudonym: field(
                "consentChallenge.patientPseudonym",
                &answer.patient_pseudonym,
            )?,
            required_scope: Scope::from_bits(answer.required_scope),
        })
    }
}

/// `consentWitness`: the calling doctor's grant for one patient and where its leaf is, as the
/// server holds them. None of it is secret from the doctor, and none of it proves anything
/// without the doctor's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantWitness {
    /// Root of the patient's consent tree the path leads to.
    pub root: Fr,
    /// The tree's sequence number at that root.
    pub sequence: u64,
    /// Depth of the tree.
    pub depth: u32,
    /// The patient's pseudonym in the grant's leaf.
    pub patient_pseudonym: Fr,
    /// The scope the grant gives.
    pub granted_scope: Scope,
    /// The grant's expiry (Unix seconds).
    pub expiry: u64,
    /// The grant's salt.
    pub salt: Fr,
    /// The leaf's index and its siblings, leaf level first.
    pub path: MerklePath,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WitnessAnswer {
    root: String,
    sequence: u64,
    depth: u32,
    patient_pseudonym: String,
    granted_scope: u16,
    expiry: u64,
    salt: String,
    leaf_index: u64,
    path: Vec<[String; SIBLINGS_PER_LEVEL]>,
}

impl GrantWitness {
    /// Decodes the `consentWitness` field of an answer's data; a path whose length is not the
    /// depth is malformed.
    pub(crate) fn from_data(data: Value) -> Result<Self, ClientError> {
        let answer: WitnessAnswer = take(data, "consentWitness")?;
        if answer.path.len() != answer.depth as usize {
            return Err(ClientError::Malformed(format!(
                "consentWitness: a path of {} levels for a tree of depth {}",
                answer.path.len(),
                answer.depth
            )));
        }
        let siblings = answer
            .path
            .iter()
            .map(|level| {
                let [left, middle, right] = level;
                Ok([
                    field("consentWitness.path", left)?,
                    field("consentWitness.path", middle)?,
                    field("consentWitness.path", right)?,
                ])
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(GrantWitness {
            root: field("consentWitness.root", &answer.root)?,
            sequence: answer.sequence,
            depth: answer.depth,
            patient_pseudonym: field("consentWitness.patientPseudonym", &answer.patient_pseudonym)?,
            granted_scope: Scope::from_bits(answer.granted_scope),
            expiry: answer.expiry,
            salt: field("consentWitness.salt", &answer.salt)?,
            path: MerklePath {
                leaf_index: answer.leaf_index,
                siblings,
            },
        })
    }
}

/// A field element in the contract's hex form; anything else is the server's fault.
fn field(what: &'static str, text: &str) -> Result<Fr, ClientError> {
    field_from_hex(what, text).map_err(|error| ClientError::Malformed(error.to_string()))
}

/// The statement the server will verify and the witness that proves it, checked natively: a
/// challenge for another scope than the one asked for, a grant for another patient, an expired
/// grant, one that lacks the scope, or a leaf that is not under the root are refused here, so
/// the doctor learns why instead of sending a proof that cannot verify.
///
/// The required scope must be exactly the one asked for: proving more would tell the server
/// more about the grant than the request needs.
pub(crate) fn statement(
    secret: &GranteeSecret,
    requested: Scope,
    challenge: &ConsentChallenge,
    grant: &GrantWitness,
) -> Result<(PublicInputs, ConsentWitness), ClientError> {
    if challenge.required_scope != requested {
        return Err(ClientError::Malformed(format!(
            "consentChallenge: requiredScope {} for a request of scope {}",
            challenge.required_scope.bits(),
            requested.bits()
        )));
    }
    if grant.patient_pseudonym != challenge.patient_pseudonym {
        return Err(ClientError::Statement(StatementError::OtherPatient));
    }
    let public = PublicInputs {
        root: grant.root,
        patient_pseudonym: challenge.patient_pseudonym,
        required_scope: challenge.required_scope,
        now: challenge.now,
        challenge: challenge.challenge,
    };
    let witness = ConsentWitness {
        grantee_secret: secret.field_element(),
        granted_scope: grant.granted_scope,
        expiry: grant.expiry,
        salt: grant.salt,
        path: grant.path.clone(),
    };
    witness
        .check(&public)
        .map_err(|violation| ClientError::Statement(violation.into()))?;
    Ok((public, witness))
}

/// A consent proof made and not yet sent: what `openConsent` takes, with the challenge and
/// grant it was made from. Sending it is [`crate::MedvaultClient::open_prepared`]; a load test
/// prepares many, then opens them.
#[derive(Debug, Clone)]
pub struct PreparedOpening {
    /// The patient the session is for.
    pub patient_id: String,
    /// The scopes asked for.
    pub scopes: Vec<AccessScope>,
    /// The server's challenge.
    pub challenge: ConsentChallenge,
    /// The doctor's grant the proof was made from.
    pub grant: GrantWitness,
    /// The statement proved.
    pub public: PublicInputs,
    /// The proof.
    pub proof: ConsentProof,
}

impl PreparedOpening {
    /// Checks the statement ([`statement`]) and proves it with randomness from `rng`.
    pub(crate) fn prove(
        key: &ConsentProvingKey,
        secret: &GranteeSecret,
        patient_id: String,
        scopes: Vec<AccessScope>,
        challenge: ConsentChallenge,
        grant: GrantWitness,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, ClientError> {
        let (public, witness) = statement(secret, AccessScope::mask(&scopes), &challenge, &grant)?;
        let proof = medvault_circuits::prove(key, &public, &witness, rng)?;
        Ok(PreparedOpening {
            patient_id,
            scopes,
            challenge,
            grant,
            public,
            proof,
        })
    }

    /// The variables of `openConsent`: the challenge and root in field hex, the proof's 128
    /// bytes in plain lowercase hex.
    pub(crate) fn variables(&self) -> Value {
        json!({
            "patientId": self.patient_id,
            "scopes": self.scopes,
            "challenge": field_to_hex(self.public.challenge),
            "root": field_to_hex(self.public.root),
            "proof": hex::encode(self.proof.to_bytes()),
        })
    }
}

/// `openConsent`'s session, and what was sent to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedConsent {
    /// The consent session's id.
    pub session_id: String,
    /// The patient the session is for.
    pub patient_id: String,
    /// The scopes the session allows.
    pub scopes: Vec<AccessScope>,
    /// When the session was opened (RFC 3339).
    pub opened_at: String,
    /// When the session ends unless the grant is revoked first (RFC 3339).
    pub expires_at: String,
    /// The statement that was proved.
    pub public: PublicInputs,
    /// The proof that was sent, as [`ConsentProof::to_bytes`].
    pub proof: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenAnswer {
    id: String,
    patient_id: String,
    scopes: Vec<AccessScope>,
    opened_at: String,
    expires_at: String,
}

impl OpenedConsent {
    /// Decodes the `openConsent` field of an answer's data for the opening that was sent.
    pub(crate) fn from_data(data: Value, sent: &PreparedOpening) -> Result<Self, ClientError> {
        let answer: OpenAnswer = take(data, "openConsent")?;
        Ok(OpenedConsent {
            session_id: answer.id,
            patient_id: answer.patient_id,
            scopes: answer.scopes,
            opened_at: answer.opened_at,
            expires_at: answer.expires_at,
            public: sent.public,
            proof: sent.proof.to_bytes(),
        })
    }
}

/// `registerGranteeKey`: the commitment the server now holds for the doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredKey {
    /// The commitment registered.
    pub commitment: Fr,
    /// When (RFC 3339).
    pub registered_at: String,
    /// How many of the doctor's existing grants were re-made for the new commitment.
    pub rekeyed_grants: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterAnswer {
    commitment: String,
    registered_at: String,
    rekeyed_grants: u64,
}

impl RegisteredKey {
    /// Decodes the `registerGranteeKey` field of an answer's data; a commitment other than the
    /// one sent is malformed.
    pub(crate) fn from_data(data: Value, sent: Fr) -> Result<Self, ClientError> {
        let answer: RegisterAnswer = take(data, "registerGranteeKey")?;
        let commitment = field("registerGranteeKey.commitment", &answer.commitment)?;
        if commitment != sent {
            return Err(ClientError::Malformed(format!(
                "registerGranteeKey: registered {}, sent {}",
                answer.commitment,
                field_to_hex(sent)
            )));
        }
        Ok(RegisteredKey {
            commitment,
            registered_at: answer.registered_at,
            rekeyed_grants: answer.rekeyed_grants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medvault_circuits::{random_field_element, ConsentTree, Grant, StatementViolation};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const DEPTH: u32 = 2;
    const NOW: u64 = 1_760_000_000;
    const PATIENT_ID: &str = "0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b";

    /// A patient's tree with three grants, the doctor's in the middle, and the doctor's secret.
    struct Fixture {
        secret: GranteeSecret,
        tree: ConsentTree,
        index: u64,
        grant: Grant,
    }

    fn fixture(rng: &mut ChaCha20Rng, scope: Scope, expiry: u64) -> Fixture {
        let secret = GranteeSecret::generate(rng);
        let patient = random_field_element(rng);
        let mut tree = ConsentTree::new(DEPTH).unwrap();
        let mut grant_to = |commitment, scope, rng: &mut ChaCha20Rng| {
            let grant = Grant {
                grantee_commitment: commitment,
                patient_pseudonym: patient,
                scope,
                expiry,
                salt: random_field_element(rng),
            };
            (tree.insert(grant.leaf()).unwrap(), grant)
        };
        let other = GranteeSecret::generate(rng).commitment();
        grant_to(other, Scope::READ, rng);
        let (index, grant) = grant_to(secret.commitment(), scope, rng);
        grant_to(other, Scope::READ | Scope::WRITE, rng);
        Fixture {
            secret,
            tree,
            index,
            grant,
        }
    }

    /// The `consentWitness` answer the contract describes for the fixture's grant.
    fn witness_data(fixture: &Fixture) -> Value {
        let path = fixture.tree.path(fixture.index).unwrap();
        json!({"consentWitness": {
            "root": field_to_hex(fixture.tree.root()),
            "sequence": fixture.tree.len(),
            "depth": DEPTH,
            "patientPseudonym": field_to_hex(fixture.grant.patient_pseudonym),
            "grantedScope": fixture.grant.scope.bits(),
            "expiry": fixture.grant.expiry,
            "salt": field_to_hex(fixture.grant.salt),
            "leafIndex": fixture.index,
            "path": path.siblings.iter().map(|level| level.map(field_to_hex)).collect::<Vec<_>>(),
        }})
    }

    /// The `consentChallenge` answer for `patient` and `required`.
    fn challenge_data(patient: Fr, required: Scope, challenge: Fr) -> Value {
        json!({"consentChallenge": {
            "challenge": field_to_hex(challenge),
            "now": NOW,
            "expiresAt": "2025-10-09T08:58:20Z",
            "patientPseudonym": field_to_hex(patient),
            "requiredScope": required.bits(),
        }})
    }

    #[test]
    fn answers_from_a_real_tree_prove_a_statement_that_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let fixture = fixture(&mut rng, Scope::READ | Scope::WRITE, NOW + 3600);
        let challenge = random_field_element(&mut rng);
        let grant = GrantWitness::from_data(witness_data(&fixture)).unwrap();
        let issued = ConsentChallenge::from_data(challenge_data(
            fixture.grant.patient_pseudonym,
            Scope::READ,
            challenge,
        ))
        .unwrap();
        assert_eq!(grant.path, fixture.tree.path(fixture.index).unwrap());
        assert_eq!(issued.now, NOW);

        let (proving_key, verifying_key) = medvault_circuits::setup(DEPTH, &mut rng).unwrap();
        let prepared = PreparedOpening::prove(
            &proving_key,
            &fixture.secret,
            PATIENT_ID.to_owned(),
            vec![AccessScope::Read],
            issued,
            grant,
            &mut rng,
        )
        .unwrap();
        let expected = PublicInputs {
            root: fixture.tree.root(),
            patient_pseudonym: fixture.grant.patient_pseudonym,
            required_scope: Scope::READ,
            now: NOW,
            challenge,
        };
        assert_eq!(prepared.public, expected);
        assert!(
            medvault_circuits::verify(&verifying_key.prepare(), &expected, &prepared.proof)
                .unwrap()
        );

        // What openConsent is sent decodes back to the same root, challenge and proof.
        let variables = prepared.variables();
        assert_eq!(variables["patientId"], PATIENT_ID);
        assert_eq!(variables["scopes"], json!(["READ"]));
        assert_eq!(variables["root"], field_to_hex(fixture.tree.root()));
        assert_eq!(variables["challenge"], field_to_hex(challenge));
        let proof_hex = variables["proof"].as_str().unwrap();
        assert_eq!(proof_hex.len(), 2 * ConsentProof::ENCODED_LEN);
        assert_eq!(proof_hex, proof_hex.to_lowercase());
        let sent = ConsentProof::from_bytes(&hex::decode(proof_hex).unwrap()).unwrap();
        assert_eq!(sent, prepared.proof);

        let opened = OpenedConsent::from_data(
            json!({"openConsent": {
                "id": "0192b3c4-0000-7000-8000-000000000001",
                "patientId": PATIENT_ID,
                "scopes": ["READ"],
                "openedAt": "2025-10-09T08:53:20Z",
                "expiresAt": "2025-10-09T09:08:20Z",
            }}),
            &prepared,
        )
        .unwrap();
        assert_eq!(opened.scopes, vec![AccessScope::Read]);
        assert_eq!(opened.public, expected);
        assert_eq!(opened.proof, prepared.proof.to_bytes());
    }

    #[test]
    fn a_grant_that_cannot_prove_the_statement_is_refused_before_proving() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let challenge = random_field_element(&mut rng);
        let refusal = |fixture: &Fixture, patient: Fr, requested: Scope, required: Scope| {
            let grant = GrantWitness::from_data(witness_data(fixture)).unwrap();
            let issued =
                ConsentChallenge::from_data(challenge_data(patient, required, challenge)).unwrap();
            statement(&fixture.secret, requested, &issued, &grant).unwrap_err()
        };

        let live = fixture(&mut rng, Scope::READ, NOW + 1);
        let patient = live.grant.patient_pseudonym;
        let another_patient = random_field_element(&mut rng);
        assert!(matches!(
            refusal(&live, another_patient, Scope::READ, Scope::READ),
            ClientError::Statement(StatementError::OtherPatient)
        ));
        assert!(matches!(
            refusal(&live, patient, Scope::WRITE, Scope::WRITE),
            ClientError::Statement(StatementError::ScopeNotCovered)
        ));
        // A challenge for more (or less) than was asked for is the server's fault.
        assert!(matches!(
            refusal(&live, patient, Scope::READ, Scope::READ | Scope::WRITE),
            ClientError::Malformed(_)
        ));

        let expired = fixture(&mut rng, Scope::READ, NOW);
        let error = refusal(
            &expired,
            expired.grant.patient_pseudonym,
            Scope::READ,
            Scope::READ,
        );
        assert!(matches!(
            error,
            ClientError::Statement(StatementError::Expired)
        ));
        assert_eq!(
            error.to_string(),
            "cannot prove consent: the grant has expired"
        );

        let mut wrong_secret = fixture(&mut rng, Scope::READ, NOW + 1);
        wrong_secret.secret = GranteeSecret::generate(&mut rng);
        assert!(matches!(
            refusal(
                &wrong_secret,
                wrong_secret.grant.patient_pseudonym,
                Scope::READ,
                Scope::READ
            ),
            ClientError::Statement(StatementError::NotInTree)
        ));
        assert_eq!(
            StatementError::from(StatementViolation::ScopeNotCovered),
            StatementError::ScopeNotCovered
        );
    }

    #[test]
    fn a_witness_answer_off_the_contract_is_malformed() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let fixture = fixture(&mut rng, Scope::READ, NOW + 1);
        let mut short_path = witness_data(&fixture);
        short_path["consentWitness"]["depth"] = json!(DEPTH + 1);
        let mut not_canonical = witness_data(&fixture);
        not_canonical["consentWitness"]["salt"] = json!(format!("0x{}", "f".repeat(64)));
        let mut unprefixed = witness_data(&fixture);
        unprefixed["consentWitness"]["root"] = json!("00".repeat(32));
        let mut two_siblings = witness_data(&fixture);
        two_siblings["consentWitness"]["path"][0] = json!(["0x00", "0x00"]);
        for answer in [short_path, not_canonical, unprefixed, two_siblings] {
            assert!(
                matches!(
                    GrantWitness::from_data(answer.clone()),
                    Err(ClientError::Malformed(_))
                ),
                "{answer}"
            );
        }
        let mut huge_scope = challenge_data(Fr::from(1u64), Scope::READ, Fr::from(2u64));
        huge_scope["consentChallenge"]["requiredScope"] = json!(1 << 16);
        assert!(matches!(
            ConsentChallenge::from_data(huge_scope),
            Err(ClientError::Malformed(_))
        ));
    }

    #[test]
    fn access_scopes_are_the_circuits_bits_and_graphqls_names() {
        assert_eq!(AccessScope::Read.scope(), Scope::READ);
        assert_eq!(AccessScope::Write.scope(), Scope::WRITE);
        assert_eq!(
            AccessScope::mask(&[AccessScope::Write, AccessScope::Read, AccessScope::Write]),
            Scope::READ | Scope::WRITE
        );
        assert_eq!(
            json!([AccessScope::Read, AccessScope::Write]),
            json!(["READ", "WRITE"])
        );
        assert_eq!(AccessScope::Write.to_string(), "WRITE");
    }

    #[test]
    fn a_registration_for_another_commitment_is_malformed() {
        let mut rng = ChaCha20Rng::seed_from_u64(17);
        let secret = GranteeSecret::generate(&mut rng);
        let answer = |commitment: Fr| {
            json!({"registerGranteeKey": {
                "commitment": field_to_hex(commitment),
                "registeredAt": "2025-10-09T08:53:20Z",
                "rekeyedGrants": 2,
            }})
        };
        let registered =
            RegisteredKey::from_data(answer(secret.commitment()), secret.commitment()).unwrap();
        assert_eq!(registered.rekeyed_grants, 2);
        assert!(matches!(
            RegisteredKey::from_data(answer(secret.field_element()), secret.commitment()),
            Err(ClientError::Malformed(_))
        ));
    }
}
