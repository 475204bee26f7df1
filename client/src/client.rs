//! [`MedvaultClient`]: one server, one bearer token, the GraphQL operations a doctor needs.
//! Proving and key loading run on tokio's blocking threads, so a caller's runtime keeps serving
//! its other tasks while a proof is made.

use crate::consent::{
    AccessScope, ConsentChallenge, ConsentKeys, GrantWitness, OpenedConsent, PreparedOpening,
    RegisteredKey,
};
use crate::error::ClientError;
use crate::graphql::{decode_answer, refusal, take};
use crate::proving_key::{check_proving_key, read_cached, write_cache, KeyHash};
use medvault_circuits::field::field_to_hex;
use medvault_circuits::{ConsentProvingKey, GranteeSecret, OsRng};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const LOGIN: &str = "mutation Login($username: String!, $password: String!) { \
    login(username: $username, password: $password) { token expiresAt user { id } } }";
const CONSENT_KEYS: &str = "query ConsentKeys { consentKeys { \
    depth verifyingKeyHash anchoredHeight provingKeyUrl provingKeyHash } }";
const REGISTER_GRANTEE_KEY: &str = "mutation RegisterGranteeKey($commitment: String!) { \
    registerGranteeKey(commitment: $commitment) { commitment registeredAt rekeyedGrants } }";
const CONSENT_CHALLENGE: &str =
    "mutation ConsentChallenge($patientId: ID!, $scopes: [AccessScope!]!) { \
    consentChallenge(patientId: $patientId, scopes: $scopes) { \
    challenge now expiresAt patientPseudonym requiredScope } }";
const CONSENT_WITNESS: &str = "query ConsentWitness($patientId: ID!) { \
    consentWitness(patientId: $patientId) { \
    root sequence depth patientPseudonym grantedScope expiry salt leafIndex path } }";
const OPEN_CONSENT: &str = "mutation OpenConsent($patientId: ID!, $scopes: [AccessScope!]!, \
    $challenge: String!, $root: String!, $proof: String!) { \
    openConsent(patientId: $patientId, scopes: $scopes, challenge: $challenge, root: $root, \
    proof: $proof) { id patientId scopes openedAt expiresAt } }";
const RECORDS: &str = "query Records($patientId: ID!, $first: Int, $after: String) { \
    patient(id: $patientId) { records(first: $first, after: $after) { \
    nodes { id version createdAt updatedAt \
    content { kind codeSystem code value unit effectiveAt note } } \
    pageInfo { hasNextPage endCursor } } } }";

/// The server's largest page.
const RECORDS_PER_PAGE: u32 = 100;
/// The most a GraphQL answer may hold; a page of records is far below it.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The most a proving key download may hold: a depth-16 key (the deepest) is about 1.2 MB.
const MAX_PROVING_KEY_BYTES: usize = 64 << 20;
/// How long one request may take, the key's download included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one medvault server, as one user once logged in. Cloning is cheap and shares the
/// connection pool; each clone keeps its own token.
#[derive(Clone)]
pub struct MedvaultClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// `login`'s session; its token is kept by the client ([`MedvaultClient::token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The user's id.
    pub user_id: String,
    /// When the token stops being accepted (RFC 3339).
    pub expires_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    token: String,
    expires_at: String,
    user: UserId,
}

#[derive(Deserialize)]
struct UserId {
    id: String,
}

#[derive(Deserialize)]
struct PatientRecords {
    records: RecordPage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordPage {
    nodes: Vec<Value>,
    page_info: PageInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

impl MedvaultClient {
    /// A client of the server at `base_url` (`http://host:port`, or `host:port`), not logged in.
    /// It speaks plain HTTP.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/');
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(MedvaultClient {
            base,
            http,
            token: None,
        })
    }

    /// The same client sending `token` as its bearer token.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        MedvaultClient {
            token: Some(token.into()),
            ..self
        }
    }

    /// The bearer token, once logged in: after [`Self::open_consent`] it is also the key to the
    /// consent session (`Authorization: Bearer <token>`).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Logs in and keeps the session's token for every later request.
    pub async fn login(&mut self, username: &str, password: &str) -> Result<LoggedIn, ClientError> {
        let data = self
            .graphql(LOGIN, json!({"username": username, "password": password}))
            .await?;
        let answer: LoginAnswer = take(data, "login")?;
        self.token = Some(answer.token);
        Ok(LoggedIn {
            user_id: answer.user.id,
            expires_at: answer.expires_at,
        })
    }

    /// Sends one GraphQL operation (with the bearer token, if any) and returns its `data`, or
    /// its first error as [`ClientError::Api`].
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value, ClientError> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = read_body(response, MAX_ANSWER_BYTES).await?;
        decode_answer(status, &body)
    }

    /// The keys the server verifies consent proofs with (public: no token needed).
    pub async fn consent_keys(&self) -> Result<ConsentKeys, ClientError> {
        take(self.graphql(CONSENT_KEYS, json!({})).await?, "consentKeys")
    }

    /// The server's proving key, checked against the hash `consentKeys` advertises. With
    /// `cache_dir`, a cached key with that hash is used instead of a download, and a downloaded
    /// one is cached; a cached file that no longer hashes right is downloaded again.
    ///
    /// The key comes without fixed-base tables: a process that proves many times gains by
    /// building them ([`ConsentProvingKey::with_tables`] on a clone).
    pub async fn proving_key(
        &self,
        cache_dir: Option<&Path>,
    ) -> Result<Arc<ConsentProvingKey>, ClientError> {
        let keys = self.consent_keys().await?;
        let hash = KeyHash::parse(&keys.proving_key_hash)?;
        let cached = cache_dir.map(|directory| hash.cache_path(directory));
        let from_cache = match cached.clone() {
            Some(path) => {
                let hash = hash.clone();
                tokio::task::spawn_blocking(move || read_cached(&path, &hash)).await??
            }
            None => None,
        };
        let key = match from_cache {
            Some(key) => key,
            None => {
                let bytes = self.download(&keys.proving_key_url).await?;
                tokio::task::spawn_blocking(move || {
                    let key = check_proving_key(&bytes, &hash)?;
                    if let Some(path) = cached {
                        write_cache(&path, &bytes)?;
                    }
                    Ok::<_, ClientError>(key)
                })
                .await??
            }
        };
        if key.depth() != keys.depth {
            return Err(ClientError::Malformed(format!(
                "consentKeys: depth {}, the proving key is for depth {}",
                keys.depth,
                key.depth()
            )));
        }
        Ok(Arc::new(key))
    }

    /// `GET` of a path on this server (never another host: the contract names a path), without
    /// the bearer token, which a public file does not need.
    async fn download(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(ClientError::Malformed(format!(
                "consentKeys.provingKeyUrl: {path:?} is not a path on this server"
            )));
        }
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = response.status();
        let body = read_body(response, MAX_PROVING_KEY_BYTES).await?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &body));
        }
        Ok(body)
    }

    /// Registers the commitment of `secret` as the logged-in doctor's grantee key. Only the
    /// commitment is sent.
    pub async fn register_grantee_key(
        &self,
        secret: &GranteeSecret,
    ) -> Result<RegisteredKey, ClientError> {
        let commitment = secret.commitment();
        let data = self
            .graphql(
                REGISTER_GRANTEE_KEY,
                json!({"commitment": field_to_hex(commitment)}),
            )
            .await?;
        RegisteredKey::from_data(data, commitment)
    }

    /// Proves consent to `scopes` of `patient_id` and opens a consent session bound to this
    /// client's token: [`Self::prepare_proof`], then [`Self::open_prepared`].
    pub async fn open_consent(
        &self,
        key: &Arc<ConsentProvingKey>,
        secret: &GranteeSecret,
        patient_id: &str,
        scopes: &[AccessScope],
    ) -> Result<OpenedConsent, ClientError> {
        let prepared = self.prepare_proof(key, secret, patient_id, scopes).await?;
        self.open_prepared(&prepared).await
    }

    /// Asks for a challenge and the doctor's grant (together), checks the statement and proves
    /// it on a blocking thread with the operating system's randomness; sends nothing else.
    /// `scopes` are sent each once, `READ` first, whatever order and repetitions they came in.
    pub async fn prepare_proof(
        &self,
        key: &Arc<ConsentProvingKey>,
        secret: &GranteeSecret,
        patient_id: &str,
        scopes: &[AccessScope],
    ) -> Result<PreparedOpening, ClientError> {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let (challenge, grant) = tokio::try_join!(
            async {
                let variables = json!({"patientId": patient_id, "scopes": &scopes});
                ConsentChallenge::from_data(self.graphql(CONSENT_CHALLENGE, variables).await?)
            },
            async {
                let variables = json!({"patientId": patient_id});
                GrantWitness::from_data(self.graphql(CONSENT_WITNESS, variables).await?)
            },
        )?;
        let key = Arc::clone(key);
        let secret = secret.clone();
        let patient_id = patient_id.to_owned();
        tokio::task::spawn_blocking(move || {
            PreparedOpening::prove(
                &key, &secret, patient_id, scopes, challenge, grant, &mut OsRng,
            )
        })
        .await?
    }

    /// Sends a prepared proof to `openConsent`.
    pub async fn open_prepared(
        &self,
        prepared: &PreparedOpening,
    ) -> Result<OpenedConsent, ClientError> {
        let data = self.graphql(OPEN_CONSENT, prepared.variables()).await?;
        OpenedConsent::from_data(data, prepared)
    }

    /// Every live record of the patient, oldest first, page by page, as the server's JSON
    /// (`id`, `version`, `createdAt`, `updatedAt` and `content`). Needs a session opened with
    /// READ on this client's token.
    pub async fn read_records(&self, patient_id: &str) -> Result<Value, ClientError> {
        let mut records = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables =
                json!({"patientId": patient_id, "first": RECORDS_PER_PAGE, "after": after});
            let patient: PatientRecords = take(self.graphql(RECORDS, variables).await?, "patient")?;
            records.extend(patient.records.nodes);
            let page = patient.records.page_info;
            if !page.has_next_page {
                return Ok(Value::Array(records));
            }
            match page.end_cursor {
                Some(cursor) if after.as_ref() != Some(&cursor) => after = Some(cursor),
                _ => {
                    return Err(ClientError::Malformed(
                        "records: a next page without a new cursor".into(),
                    ))
                }
            }
        }
    }
}

/// The body of `response`, refused once it passes `limit` bytes so that a server cannot make
/// the client hold an unbounded answer.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ClientError::Malformed(format!(
                "an answer of more than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
