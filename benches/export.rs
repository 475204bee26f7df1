//! Anonymized export throughput on 1,000,000 synthetic measurement rows, and peak memory, with
//! DuckDB writing the same anonymized rows to zstd Parquet in the same run as the baseline.
//!
//! Run: `scripts/setup && cargo bench --bench export` (DuckDB comes from the project's `.venv`).
//! Prints a Markdown table for BENCHMARKS.md; the last column times the event generator alone
//! (one pass drained into a counter), which the export's own time includes.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use ed25519_dalek::SigningKey;
use medvault_exporter::policy::{
    BirthGeneralization, DateGeneralization, PseudonymScope, ZipGeneralization,
};
use medvault_exporter::{
    export, ClinicalEvent, Dataset, EventKind, ExportContext, ExportPolicy, Person,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const PERSONS: usize = 50_000;
const ROWS: usize = 1_000_000;

fn persons() -> Vec<Person> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..PERSONS)
        .map(|i| {
            let mut patient_id = [0u8; 16];
            patient_id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Person {
                patient_id,
                date_of_birth: NaiveDate::from_ymd_opt(
                    rng.gen_range(1940..2005),
                    rng.gen_range(1..=12),
                    1,
                )
                .unwrap_or_default(),
                sex: ["female", "male"][rng.gen_range(0..2)].into(),
                postal_code: Some(format!("{:05}", rng.gen_range(10..40) * 1000)),
            }
        })
        .collect()
}

/// The events, generated on the fly so the input never sits in memory.
fn events() -> impl Iterator<Item = ClinicalEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..ROWS).map(move |i| {
        let mut patient_id = [0u8; 16];
        patient_id[..8].copy_from_slice(&((i % PERSONS) as u64).to_be_bytes());
        ClinicalEvent {
            patient_id,
            kind: EventKind::Measurement,
            code_system: "LOINC".into(),
            code: ["2345-7", "4548-4", "718-7", "8867-4"][i % 4].into(),
            value: Some(format!("{}", rng.gen_range(40..200))),
            unit: Some("mg/dL".into()),
            effective_at: start + Duration::minutes(rng.gen_range(0..1_000_000)),
        }
    })
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn duckdb_seconds(arrow_file: &Path, out: &Path) -> Option<f64> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = r#"
import sys, time, duckdb, pyarrow.feather
rows = pyarrow.feather.read_table(sys.argv[1])
con = duckdb.connect()
con.register("rows", rows)
started = time.perf_counter()
con.execute(f"COPY rows TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
print(time.perf_counter() - started)
"#;
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(arrow_file)
        .arg(out)
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn main() {
    let persons = persons();
    let policy = ExportPolicy {
        dataset: Dataset::Observations,
        columns: Vec::new(),
        birth: BirthGeneralization::AgeBand { width: 10 },
        zip: ZipGeneralization::Zip3,
        include_sex: true,
        dates: DateGeneralization::Month,
        sensitive: None,
        k: 5,
        l: None,
        max_suppression: 0.05,
        pseudonym_scope: PseudonymScope::PerExport,
    };
    let context = ExportContext {
        organization: "Bench Hospital".into(),
        signing_key: SigningKey::from_bytes(&[5; 32]),
        pseudonym_secret: [6; 32],
        consent_root: "00".repeat(32),
        chain_height: 0,
        as_of: Utc::now(),
    };
    let dir = std::env::temp_dir().join(format!("medvault-export-bench-{}", std::process::id()));
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let manifest = match export(
        &policy,
        &context,
        &persons,
        || events().map(Ok),
        &dir.join("export"),
    ) {
        Ok(manifest) => manifest,
        Err(error) => panic!("export failed: {error}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let rss_after = peak_rss_mib();
    // The generator alone, for scale: one pass of the same events, drained into a counter.
    let generator_started = Instant::now();
    let bytes = events().fold(0usize, |bytes, event| {
        bytes + std::hint::black_box(event).code.len()
    });
    std::hint::black_box(bytes);
    let generator_seconds = generator_started.elapsed().as_secs_f64();
    let baseline = duckdb_seconds(
        &dir.join("export/measurement.arrow"),
        &dir.join("duckdb.parquet"),
    );
    println!("| rows | medvault export (Arrow IPC + Parquet) | rows/s | DuckDB COPY to Parquet, same rows | rows/s | ratio | peak RSS before / after | generator alone (inside the export) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let rows = manifest.events_out as f64;
    match baseline {
        Some(duck) => println!(
            "| {} | {seconds:.2} s | {:.0} | {duck:.2} s | {:.0} | {:.2} | {rss_before:.0} / {rss_after:.0} MiB | {generator_seconds:.2} s |",
            manifest.events_out,
            rows / seconds,
            rows / duck,
            seconds / duck
        ),
        None => println!(
            "| {} | {seconds:.2} s | {:.0} | (no .venv: run scripts/setup) | | | {rss_before:.0} / {rss_after:.0} MiB | {generator_seconds:.2} s |",
            manifest.events_out,
            rows / seconds
        ),
    }
    let _ = std::fs::remove_dir_all(dir);
}
