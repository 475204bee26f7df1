//! The medvault vault: the one place health data is written, read and authorized.
//!
//! Users and roles ([`users`], [`sessions`], [`auth`]), the access policy every operation decides
//! through ([`policy`]), grants and research consents ([`grants`]), the consent trees and the
//! proofs that open every doctor's access ([`consent`]), patients' profiles and their
//! encrypted, versioned records ([`patients`], [`records`]), the access log ([`access_log`]),
//! anonymized exports ([`exports`], over [`research`] snapshots), anchoring on the hospitals'
//! chain ([`anchoring`]), and the demo's data set ([`demo`]). Everything is stored in PostgreSQL
//! ([`database`]), sealed with keys derived from one master key ([`crypto`], [`key_check`]).
//!
//! The crate knows nothing of HTTP, GraphQL or MQTT: every operation takes its caller (an
//! [`Actor`](auth::Actor) or a [`Permit`]) and returns a [`VaultError`]; transports map it to
//! their codes.

mod access_log;
pub mod anchoring;
pub mod auth;
pub mod consent;
pub mod crypto;
pub mod database;
pub mod demo;
pub mod domain;
mod erasure;
pub mod error;
pub mod exports;
mod grants;
mod key_check;
mod login_throttle;
mod patients;
mod policy;
mod records;
mod research;
mod services;
mod sessions;
mod users;

pub use access_log::AccessLogEntry;
pub use erasure::Erasure;
pub use error::{VaultError, VaultResult};
pub use grants::Grant;
pub use key_check::{MasterKeySource, OpenVaultError};
pub use login_throttle::LoginThrottle;
pub use patients::{PatientSummary, ProfileVersion};
pub use policy::{
    may_without_grants, require_role, AuditedAction, ExportRecipient, HospitalCeiling,
    PatientListing, Permit,
};
pub use records::{RecordVersion, StoredRecord, VersionOperation, MAX_RECORDS_PER_BATCH};
pub use research::ResearchSnapshot;
pub use services::{ChainTarget, Services, StartError, VaultConfig};
pub use sessions::Session;
pub use users::{NewStaffUser, Organization, UserInfo};

use crate::crypto::MasterKey;
use deadpool_postgres::Pool;
use std::sync::Arc;

/// Handles to the database and the master key; cheap to clone.
#[derive(Clone)]
pub struct Vault {
    pool: Pool,
    master: Arc<MasterKey>,
    session_ttl: chrono::Duration,
    throttle: LoginThrottle,
    consent: Arc<consent::Consent>,
    /// The chain whose governance admits hospitals; `None` for a vault opened without one
    /// (tests, and commands that create no hospital).
    chain: Option<Arc<anchoring::AnchorChain>>,
}

impl Vault {
    /// A vault over `pool` whose patient keys are wrapped by `master`, with its consent side.
    fn new(
        pool: Pool,
        master: MasterKey,
        session_ttl: chrono::Duration,
        consent: consent::Consent,
    ) -> Self {
        Vault {
            pool,
            master: Arc::new(master),
            session_ttl,
            throttle: LoginThrottle::default(),
            consent: Arc::new(consent),
            chain: None,
        }
    }

    /// A vault over `pool` that reads nothing from the database to start: no master key check,
    /// no consent tree loaded (each would be rebuilt from the database on first use). For
    /// harnesses whose requests never reach a database, such as the GraphQL request fuzzer;
    /// servers open with [`Vault::open`].
    pub fn unchecked(
        pool: Pool,
        master: MasterKey,
        session_ttl: chrono::Duration,
        consent_keys: Arc<consent::keys::ConsentKeys>,
    ) -> Self {
        let trees = consent::tree::ConsentTrees::unloaded(consent_keys.depth());
        let consent = consent::Consent {
            keys: consent_keys,
            trees,
            settings: consent::ConsentSettings::default(),
        };
        Vault::new(pool, master, session_ttl, consent)
    }

    /// The same vault with other limits on failed logins.
    pub fn with_login_throttle(self, throttle: LoginThrottle) -> Self {
        Vault { throttle, ..self }
    }

    /// The same vault, admitting only the hospitals `chain`'s governance has admitted.
    pub(crate) fn with_chain(self, chain: Arc<anchoring::AnchorChain>) -> Self {
        Vault {
            chain: Some(chain),
            ..self
        }
    }

    /// The master key, for the keys an export is signed and pseudonymized with.
    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// The connection pool, for readiness checks and pool metrics.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// One page of a keyset-paginated list: at most `first` items after the cursor `after`.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest<C> {
    /// The last item of the previous page, if any.
    pub after: Option<C>,
    /// How many items to return.
    pub first: i64,
}

/// A page of items and whether more follow.
#[derive(Debug)]
pub struct Page<T> {
    /// The items in order.
    pub items: Vec<T>,
    /// Whether another page follows.
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with `LIMIT first + 1`.
    pub(crate) fn from_overfetched(mut items: Vec<T>, first: i64) -> Self {
        let limit = usize::try_from(first).unwrap_or(0);
        let has_next_page = items.len() > limit;
        items.truncate(limit);
        Page {
            items,
            has_next_page,
        }
    }
}
