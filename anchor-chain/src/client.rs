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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a request to a validator failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer (connection refused, timeout, ...).
    #[error("request to {url} failed: {detail}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
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

/// A client of a validator cluster's HTTP API through one or more of its nodes. Requests go to
/// the node that answered last (the leader, once found); when it cannot be reached or answers
/// that it cannot serve now, the others are tried in turn, and a submission that had to move
/// looks for the leader among the nodes so that the next one goes straight to it.
#[derive(Clone)]
pub struct ChainClient {
    nodes: Arc<[String]>,
    preferred: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// `host:port`, or a full URL, as a base URL without a trailing slash.
fn base_url(address: &str) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("http://{address}")
    }
}

impl ChainClient {
    /// A client of the validator at `address` (`host:port`, or a full `http://` URL).
    pub fn new(address: &str) -> ChainClient {
        ChainClient::for_nodes(&[address.to_owned()])
    }

    /// A client of the cluster reached through any of `addresses`; the first is tried first.
    /// An empty list gives a client whose every request fails as unreachable.
    pub fn for_nodes(addresses: &[String]) -> ChainClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        ChainClient {
            nodes: addresses.iter().map(|a| base_url(a)).collect(),
            preferred: Arc::new(AtomicUsize::new(0)),
            http,
        }
    }

    /// The base URLs of the nodes this client uses.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Sends `request` to the preferred node and, while the answer is a retryable failure, to
    /// each other node in turn; the node that answers becomes the preferred one. Returns the
    /// answer and whether a node other than the preferred one gave it.
    async fn on_any_node<T, F, Fut>(&self, request: F) -> Result<(T, bool), ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_failure = ClientError::Transport {
            url: String::new(),
            detail: "no validator address is configured".to_owned(),
        };
        for step in 0..self.nodes.len() {
            let index = (first + step) % self.nodes.len();
            match request(self.nodes[index].clone()).await {
                Ok(answer) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok((answer, step > 0));
                }
                Err(failure) if failure.is_retryable() => last_failure = failure,
                Err(failure) => return Err(failure),
            }
        }
        Err(last_failure)
    }

    /// Makes the configured node that says it is the leader the preferred one, if any does.
    async fn follow_leader(&self) {
        for (index, base) in self.nodes.iter().enumerate() {
            let status: Result<StatusResponse, _> = self.get_from(base, "/v1/status").await;
            if status.is_ok_and(|status| status.leader_id == Some(status.member_id)) {
                self.preferred.store(index, Ordering::Relaxed);
                return;
            }
        }
    }

    async fn answer<T: DeserializeOwned>(
        url: String,
        sent: reqwest::Result<reqwest::Response>,
    ) -> Result<T, ClientError> {
        let response = sent.map_err(|source| ClientError::Transport {
            url: url.clone(),
            detail: source.to_string(),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                detail: source.to_string(),
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

    async fn get_from<T: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{base}{path}");
        let sent = self.http.get(&url).send().await;
        Self::answer(url, sent).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (answer, _) = self
            .on_any_node(|base| async move { self.get_from(&base, path).await })
            .await?;
        Ok(answer)
    }

    /// Anchors entries; one outcome per entry once committed. Submitting an entry already on
    /// the chain answers with its existing receipt, so a submission repeated after a lost
    /// answer anchors nothing twice.
    pub async fn submit(&self, entries: Vec<Entry>) -> Result<Vec<EntryOutcome>, ClientError> {
        let request = SubmitRequest { entries };
        let (response, moved) = self
            .on_any_node(|base| {
                let request = &request;
                async move {
                    let url = format!("{base}/v1/entries");
                    let sent = self.http.post(&url).json(request).send().await;
                    Self::answer::<SubmitResponse>(url, sent).await
                }
            })
            .await?;
        if moved {
            self.follow_leader().await;
        }
        Ok(response.results)
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
