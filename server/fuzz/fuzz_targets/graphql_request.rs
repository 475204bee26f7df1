//! Arbitrary text as a GraphQL request: the bounds checks, then parsing, validation and
//! execution against the real schema. Finds panics, stack overflows (the process aborts) and
//! requests slower than a second (an assertion; run with `-timeout=2` as well, so that a request
//! that never returns is caught too).
//!
//! The schema has the server's limits (`graphql::limited_schema`) and a vault whose pool points
//! at a socket that does not exist: a resolver that reaches the database fails at once with an
//! internal error, as it would with the database down, and everything before that runs as in the
//! server. Export jobs are not attached (they start only inside a running application), so their
//! resolvers answer with an error too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use medvault_server::crypto::MasterKey;
use medvault_server::graphql::bounds::check_request;
use medvault_server::graphql::{self, MedvaultSchema, QueryLimits, RequestContext};
use medvault_server::metrics::Metrics;
use medvault_server::vault::Vault;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
        let pool = medvault_server::database::connect_pool(
            "host=/nonexistent/medvault-fuzz user=fuzz dbname=fuzz",
            1,
        )
        .expect("a pool");
        let master = MasterKey::from_hex(&"11".repeat(32)).expect("a key");
        let vault = Vault::new(pool, master, chrono::Duration::hours(1));
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
    let started = Instant::now();
    let mut request = async_graphql::Request::new(query);
    if check_request(&mut request, &harness.limits.document).is_ok() {
        let request = graphql::attach_request_data(
            request,
            &harness.vault,
            RequestContext::new(None, None, None),
        );
        harness.runtime.block_on(harness.schema.execute(request));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "a request of {} bytes took {elapsed:?}",
        data.len()
    );
});
