//! A typed HTTP client for a validator cluster: what the server crate, the CLI and the tests use
//! to submit entries and to fetch blocks and proofs for the auditor.

use crate::api::{
    ApiError, HeadResponse, StatusResponse, SubmitRequest, SubmitResponse, MAX_BLOCKS_PER_PAGE,
};
use crate::block::SignedBlock;
use crate::bytes::Hash32;
use crate::entry::Entry;
use crate::governance::MemberSet;
use crate::state::EntryOutcome;
use crate::verify::EntryProof;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a request to a validator failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer (connection refused, timeout, ...).
    #[error("request to {url} failed: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The validator answered with an error.
    #[error("{url} answered {status}: {code}: {detail}")]
    Api {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's explanation.
        detail: String,
    },
    /// The answer is not what the API promises.
    #[error("{url} answered with an unreadable body: {detail}")]
    Decode {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
}

impl ClientError {
    /// Whether the same request may succeed later (no leader yet, overload, node down).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => *status == 503,
            ClientError::Decode { .. } => false,
        }
    }
}

/// A client of one validator's HTTP API.
#[derive(Clone)]
pub struct ChainClient {
    base: String,
    http: reqwest::Client,
}

impl ChainClient {
    /// A client of the validator at `address` (`host:port`, or a full `http://` URL).
    pub fn new(address: &str) -> ChainClient {
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_owned()
        } else {
            format!("http://{address}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        ChainClient { base, http }
    }

    async fn answer<T: DeserializeOwned>(
        url: String,
        sent: reqwest::Result<reqwest::Response>,
    ) -> Result<T, ClientError> {
        let response = sent.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if status != StatusCode::OK && status != StatusCode::ACCEPTED {
            let (code, detail) = match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(api) => (api.error, api.detail),
                Err(_) => (
                    "http".to_owned(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ),
            };
            return Err(ClientError::Api {
                url,
                status: status.as_u16(),
                code,
                detail,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            detail: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let sent = self.http.get(&url).send().await;
        Self::answer(url, sent).await
    }

    /// Anchors entries; one outcome per entry once committed.
    pub async fn submit(&self, entries: Vec<Entry>) -> Result<Vec<EntryOutcome>, ClientError> {
        let url = format!("{}/v1/entries", self.base);
        let sent = self
            .http
            .post(&url)
            .json(&SubmitRequest { entries })
            .send()
            .await;
        Self::answer::<SubmitResponse>(url, sent)
            .await
            .map(|response| response.results)
    }

    /// The chain head.
    pub async fn head(&self) -> Result<HeadResponse, ClientError> {
        self.get("/v1/head").await
    }

    /// The validator's Raft and chain status.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get("/v1/status").await
    }

    /// The block at `height`; `None` beyond the head.
    pub async fn block(&self, height: u64) -> Result<Option<SignedBlock>, ClientError> {
        match self.get(&format!("/v1/blocks/{height}")).await {
            Ok(block) => Ok(Some(block)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every block from genesis to the head, fetched page by page.
    pub async fn all_blocks(&self) -> Result<Vec<SignedBlock>, ClientError> {
        let mut blocks = Vec::new();
        loop {
            let from = blocks.len();
            let page: Vec<SignedBlock> = self
                .get(&format!(
                    "/v1/blocks?from={from}&limit={MAX_BLOCKS_PER_PAGE}"
                ))
                .await?;
            if page.is_empty() {
                return Ok(blocks);
            }
            blocks.extend(page);
        }
    }

    /// Inclusion proof of an entry; `None` when it is not anchored.
    pub async fn proof(&self, entry_hash: &Hash32) -> Result<Option<EntryProof>, ClientError> {
        match self.get(&format!("/v1/entries/{entry_hash}/proof")).await {
            Ok(proof) => Ok(Some(proof)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The member set in force for the next block.
    pub async fn members(&self) -> Result<MemberSet, ClientError> {
        self.get("/v1/members").await
    }
}
