//! How long a server's start spends rebuilding the consent trees of 100,000 grants (issue 12).
//! `Vault::open` recomputes every leaf from its grant (Poseidon, in parallel on rayon's threads)
//! and every root from the leaves, and compares them with what is stored, before it serves.
//!
//! The grants are made through the vault's own `grant_access`, spread over four hospitals (each
//! hospital's tree serializes its changes) at depth 10, the real one, so the stored trees are
//! genuine. Only the patients' accounts are inserted with plain SQL: a grant reads no more of a
//! patient than their id, role and hospital, and 100,000 Argon2 hashes would take most of an
//! hour.
//!
//! Baselines in the same run, alternated with the measured opens: the plain `SELECT` of the rows
//! the rebuild reads (the query of `leaf_fields` in server/vault/src/consent/tree.rs, once per
//! hospital), and `Vault::open` over an empty database with the same keys (what a start costs
//! without trees: loading and checking the keys and the master key).
//!
//! Prints a Markdown table for BENCHMARKS.md. Run: `cargo bench --bench consent_rebuild`.
//! Uses `DATABASE_URL` if set, else a throwaway cluster.

use deadpool_postgres::Pool;
use futures_util::stream::{self, StreamExt};
use medvault_circuits::{GranteeSecret, OsRng, DEFAULT_DEPTH};
use medvault_server::postgres_cluster::ScratchServer;
use medvault_vault::auth::{Actor, Operator};
use medvault_vault::consent::{ConsentConfig, ConsentSettings};
use medvault_vault::domain::{AccessScope, Role};
use medvault_vault::{database, MasterKeySource, NewStaffUser, Vault};
use std::time::{Duration, Instant};
use uuid::Uuid;

const GRANTS: usize = 100_000;
const HOSPITALS: usize = 4;
const DOCTORS_PER_HOSPITAL: usize = 8;
/// Grants in flight at once: enough for every hospital's tree to always have one waiting.
const CONCURRENT_GRANTS: usize = 16;
const RUNS: usize = 5;
const PASSWORD: &str = "benchmark password 2026";

/// The rows the rebuild reads for one hospital: the query of `leaf_fields` in
/// server/vault/src/consent/tree.rs.
const LEAF_FIELDS: &str =
    "SELECT l.grant_id, g.patient_id, g.scope, g.expires_at, l.grantee_commitment, l.salt,
            l.leaf, l.revoked_sequence IS NOT NULL, l.leaf_index
     FROM consent_leaves l JOIN grants g ON g.id = l.grant_id
     WHERE l.hospital_id = $1 ORDER BY l.leaf_index";

fn master_key() -> MasterKeySource {
    MasterKeySource::Hex("42".repeat(32))
}

fn consent_config() -> ConsentConfig {
    ConsentConfig {
        keys_dir: std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bench-consent-keys-{DEFAULT_DEPTH}")),
        depth_if_created: DEFAULT_DEPTH,
        settings: ConsentSettings::default(),
    }
}

/// A migrated database on the scratch server.
async fn migrated_database() -> Pool {
    let url = ScratchServer::get()
        .expect("PostgreSQL")
        .create_database()
        .await
        .expect("database");
    let pool = database::connect_pool(&url, 32).expect("pool");
    database::migrate(&pool).await.expect("migrate");
    pool
}

/// How long `Vault::open` takes over `pool`.
async fn time_open(pool: &Pool) -> Duration {
    let started = Instant::now();
    Vault::open(
        pool.clone(),
        &master_key(),
        chrono::Duration::hours(1),
        consent_config(),
    )
    .await
    .expect("open the vault");
    started.elapsed()
}

/// How long the plain `SELECT` of every hospital's leaf rows takes, and how many rows it read.
async fn time_select(pool: &Pool, hospitals: &[Uuid]) -> (Duration, usize) {
    let client = pool.get().await.expect("connection");
    let started = Instant::now();
    let mut rows = 0;
    for hospital in hospitals {
        rows += client
            .query(LEAF_FIELDS, &[hospital])
            .await
            .expect("select")
            .len();
    }
    (started.elapsed(), rows)
}

/// A hospital with its doctors (each with a registered grantee key) and its patients.
struct Hospital {
    id: Uuid,
    doctors: Vec<Uuid>,
    patients: Vec<Uuid>,
}

async fn make_hospital(vault: &Vault, pool: &Pool, n: usize) -> Hospital {
    let (organization, admin) = vault
        .create_hospital_admin(
            &Operator::at_command_line(),
            &format!("Rebuild Hospital {n}"),
            NewStaffUser {
                username: format!("rebuild-admin-{n}"),
                password: PASSWORD.into(),
                role: Role::Admin,
                display_name: format!("Admin {n}"),
                specialty: None,
            },
        )
        .await
        .expect("hospital");
    let admin = Actor {
        user_id: admin.id,
        role: Role::Admin,
        organization_id: organization.id,
        session: None,
    };
    let mut doctors = Vec::new();
    for d in 0..DOCTORS_PER_HOSPITAL {
        let doctor = vault
            .create_staff_user(
                &admin,
                None,
                NewStaffUser {
                    username: format!("rebuild-doctor-{n}-{d}"),
                    password: PASSWORD.into(),
                    role: Role::Doctor,
                    display_name: format!("Dr. Rebuild {n}-{d}"),
                    specialty: Some("Cardiology".into()),
                },
            )
            .await
            .expect("doctor");
        let actor = Actor {
            user_id: doctor.id,
            role: Role::Doctor,
            organization_id: organization.id,
            session: None,
        };
        vault
            .register_grantee_key(&actor, GranteeSecret::generate(&mut OsRng).commitment())
            .await
            .expect("grantee key");
        doctors.push(doctor.id);
    }
    let patients = pool
        .get()
        .await
        .expect("connection")
        .query(
            "INSERT INTO users (id, organization_id, username, role, password_hash)
             SELECT gen_random_uuid(), $1, 'rebuild-patient-' || $2::text || '-' || n, 'patient',
                    'not a login account'
             FROM generate_series(1, $3::int) AS n RETURNING id",
            &[
                &organization.id,
                &n.to_string(),
                &i32::try_from(GRANTS / HOSPITALS).expect("patients per hospital"),
            ],
        )
        .await
        .expect("patients")
        .iter()
        .map(|row| row.get(0))
        .collect();
    Hospital {
        id: organization.id,
        doctors,
        patients,
    }
}

/// Makes `GRANTS` grants through `grant_access`, round robin over the hospitals, each patient
/// granting one of their hospital's doctors READ (or READ and WRITE) for a year.
async fn make_grants(vault: &Vault, hospitals: &[Hospital]) -> Duration {
    let expires_at = chrono::Utc::now() + chrono::Duration::days(365);
    let started = Instant::now();
    let jobs = (0..GRANTS).map(|i| {
        let hospital = &hospitals[i % HOSPITALS];
        let n = i / HOSPITALS;
        let patient = Actor {
            user_id: hospital.patients[n],
            role: Role::Patient,
            organization_id: hospital.id,
            session: None,
        };
        let scopes: &[AccessScope] = if n % 2 == 0 {
            &[AccessScope::Read]
        } else {
            &[AccessScope::Read, AccessScope::Write]
        };
        (
            i,
            patient,
            hospital.doctors[n % DOCTORS_PER_HOSPITAL],
            scopes,
        )
    });
    stream::iter(jobs)
        .for_each_concurrent(
            CONCURRENT_GRANTS,
            |(i, patient, doctor, scopes)| async move {
                vault
                    .grant_access(&patient, doctor, scopes, expires_at)
                    .await
                    .expect("grant");
                if (i + 1) % 10_000 == 0 {
                    println!(
                        "{} grants in {:.0} s",
                        i + 1,
                        started.elapsed().as_secs_f64()
                    );
                }
            },
        )
        .await;
    started.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn seconds(times: &[Duration]) -> String {
    times
        .iter()
        .map(|time| format!("{:.3}", time.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        println!("load average at the start: {}", load_average());
        let pool = migrated_database().await;
        let empty = migrated_database().await;
        let vault = Vault::open(
            pool.clone(),
            &master_key(),
            chrono::Duration::hours(1),
            consent_config(),
        )
        .await
        .expect("open the vault");
        let mut hospitals = Vec::new();
        for n in 0..HOSPITALS {
            hospitals.push(make_hospital(&vault, &pool, n).await);
        }
        let making = make_grants(&vault, &hospitals).await;
        drop(vault);
        println!(
            "{GRANTS} grants over {HOSPITALS} hospitals at depth {DEFAULT_DEPTH} made in {:.0} s \
             ({:.0} grants/s), load average {}",
            making.as_secs_f64(),
            GRANTS as f64 / making.as_secs_f64(),
            load_average()
        );

        let ids: Vec<Uuid> = hospitals.iter().map(|hospital| hospital.id).collect();
        // Once each, unrecorded: the empty database's first open stores its key check, and the
        // first reads bring the tables into PostgreSQL's buffers.
        time_open(&empty).await;
        time_select(&pool, &ids).await;
        time_open(&pool).await;
        let (mut opens, mut empty_opens, mut selects) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let (select, rows) = time_select(&pool, &ids).await;
            assert_eq!(rows, GRANTS, "every grant has its leaf");
            selects.push(select);
            opens.push(time_open(&pool).await);
            empty_opens.push(time_open(&empty).await);
        }
        let open = median(opens.clone());
        let empty_open = median(empty_opens.clone());
        let select = median(selects.clone());
        let rebuild = open.saturating_sub(empty_open);

        println!();
        println!("| what | median | runs (s) |");
        println!("| --- | --- | --- |");
        println!(
            "| `Vault::open`, {GRANTS} grants in {HOSPITALS} hospitals, depth {DEFAULT_DEPTH} | \
             {:.3} s | {} |",
            open.as_secs_f64(),
            seconds(&opens)
        );
        println!(
            "| `Vault::open`, empty database, same keys (baseline) | {:.3} s | {} |",
            empty_open.as_secs_f64(),
            seconds(&empty_opens)
        );
        println!(
            "| plain `SELECT` of the rows the rebuild reads (baseline) | {:.3} s | {} |",
            select.as_secs_f64(),
            seconds(&selects)
        );
        println!();
        println!(
            "rebuild (open minus empty open): {:.3} s, {:.0} grants/s; {:.1}x the plain SELECT; \
             load average at the end: {}",
            rebuild.as_secs_f64(),
            GRANTS as f64 / rebuild.as_secs_f64(),
            rebuild.as_secs_f64() / select.as_secs_f64(),
            load_average()
        );
    });
}
