//! Arbitrary text as a GraphQL request: the bounds checks, then parsing, validation and
//! execution against the real schema. Finds panics, stack overflows (the process aborts) and
//! requests that take more than a second of CPU (an assertion on the thread's CPU time, which a
//! loaded machine does not inflate as it does wall time; run with `-timeout=2` as well, so that a
//! request that never returns is caught too).
//!
//! The schema has the server's limits (`graphql::limited_schema`) and a vault whose pool points
//! at a socket that does not exist: a resolver that reaches the database fails at once with an
//! internal error, as it would with the database down, and everything before that runs as in the
//! server. Export jobs are not attached (they start only inside a running application), so their
//! resolvers answer with an error too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use medvault_vault::consent::keys::ConsentKeys;
use medvault_vault::crypto::MasterKey;
use medvault_server::graphql::bounds::check_request;
use medvault_server::graphql::{self, MedvaultSchema, QueryLimits, RequestContext};
use medvault_server::metrics::Metrics;
use medvault_vault::Vault;
use std::sync::OnceLock;
use std::time::Duration;

struct Harness {
    runtime: tokio::runtime::Runtime,
    schema: MedvaultSchema,
    vault: Vault,
    limits: QueryLimits,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let pool = medvault_vault::database::connect_pool(
            "host=/nonexistent/medvault-fuzz user=fuzz dbname=fuzz",
            1,
        )
        .expect("a pool");
        let master = MasterKey::from_hex(&"11".repeat(32)).expect("a key");
        let keys_dir = std::env::temp_dir().join("medvault-fuzz-consent-keys");
        let keys = ConsentKeys::load_or_create(&keys_dir, 1).expect("consent keys");
        let vault = Vault::unchecked(
            pool,
            master,
            chrono::Duration::hours(1),
            std::sync::Arc::new(keys),
        );
        let limits = QueryLimits::new(false);
        let schema = graphql::limited_schema(limits)
            .data(vault.clone())
            .data(Metrics::new().expect("metrics"))
            .finish();
        Harness {
            runtime,
            schema,
            vault,
            limits,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let harness = harness();
    let started = thread_cpu_time();
    let mut request = async_graphql::Request::new(query);
    if check_request(&mut request, &harness.limits.document).is_ok() {
        let request = graphql::attach_request_data(
            request,
            &harness.vault,
            RequestContext::new(None, None, None),
        );
        harness.runtime.block_on(harness.schema.execute(request));
    }
    let spent = thread_cpu_time().saturating_sub(started);
    assert!(
        spent < Duration::from_secs(1),
        "a request of {} bytes took {spent:?} of CPU",
        data.len()
    );
});

/// CPU time this thread has used; the runtime is single-threaded, so a request's work is all
/// on it.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec, and the clock id is a constant Linux defines.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}
