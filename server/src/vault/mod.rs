//! The encrypted, versioned record vault over PostgreSQL: the one place health data is written,
//! read and authorized. GraphQL resolvers call these methods and nothing else touches the tables.

mod access_log;
mod grants;
mod key_check;
mod login_throttle;
mod patients;
mod policy;
mod records;
mod research;
mod sessions;
mod users;

pub use access_log::AccessLogEntry;
pub use grants::Grant;
pub use key_check::OpenVaultError;
pub use login_throttle::LoginThrottle;
pub use patients::{PatientSummary, ProfileVersion};
pub use policy::{
    may_without_grants, require_role, AuditedAction, HospitalCeiling, PatientListing, Permit,
};
pub use records::{RecordVersion, StoredRecord, VersionOperation, MAX_RECORDS_PER_BATCH};
pub use research::ResearchSnapshot;
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
}

impl Vault {
    /// A vault over `pool` whose patient keys are wrapped by `master`.
    pub fn new(pool: Pool, master: MasterKey, session_ttl: chrono::Duration) -> Self {
        Vault {
            pool,
            master: Arc::new(master),
            session_ttl,
            throttle: LoginThrottle::default(),
        }
    }

    /// The same vault with other limits on failed logins.
    pub fn with_login_throttle(self, throttle: LoginThrottle) -> Self {
        Vault { throttle, ..self }
    }

    /// The master key, for the keys an export is signed and pseudonymized with.
    pub fn master_key(&self) -> &MasterKey {
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
