//! Exports of a seeded synthetic population: read back by real readers (pyarrow, polars and
//! DuckDB, from the project's virtual environment made by `scripts/setup`), checked for k and l
//! independently, searched for identifiers, and audited.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use ed25519_dalek::SigningKey;
use medvault_exporter::policy::{
    BirthGeneralization, DateGeneralization, PseudonymScope, ZipGeneralization,
};
use medvault_exporter::{
    export, verify_export, ClinicalEvent, Dataset, EventKind, ExportContext, ExportError,
    ExportPolicy, Person,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

const PERSONS: usize = 600;
const EVENTS_PER_PERSON: usize = 12;
const CONDITIONS: [&str; 6] = ["E11.9", "I10", "J45.9", "E78.5", "K21.9", "N18.3"];

fn population() -> (Vec<Person>, Vec<ClinicalEvent>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let zips = ["02139", "02140", "10001", "94110", "03601"];
    let persons: Vec<Person> = (0..PERSONS)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Person {
                patient_id: id,
                date_of_birth: NaiveDate::from_ymd_opt(
                    rng.gen_range(1940..2005),
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28),
                )
                .unwrap(),
                sex: ["female", "male"][rng.gen_range(0..2)].into(),
                postal_code: Some(zips[rng.gen_range(0..zips.len())].into()),
            }
        })
        .collect();
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let events = persons
        .iter()
        .flat_map(|person| {
            let mut rng = ChaCha8Rng::from_seed([person.patient_id[7]; 32]);
            (0..EVENTS_PER_PERSON)
                .map(|e| event(&mut rng, person.patient_id, e, start))
                .collect::<Vec<_>>()
        })
        .collect();
    (persons, events)
}

fn event(
    rng: &mut ChaCha8Rng,
    patient_id: [u8; 16],
    index: usize,
    start: DateTime<Utc>,
) -> ClinicalEvent {
    let effective_at = start + Duration::hours(rng.gen_range(0..20_000));
    if index % 3 == 0 {
        ClinicalEvent {
            patient_id,
            kind: EventKind::Condition,
            code_system: "ICD10".into(),
            code: CONDITIONS[rng.gen_range(0..CONDITIONS.len())].into(),
            value: Some("free text that must not be exported".into()),
            unit: None,
            effective_at,
        }
    } else {
        ClinicalEvent {
            patient_id,
            kind: EventKind::Measurement,
            code_system: "LOINC".into(),
            code: "2345-7".into(),
            value: Some(format!("{}", rng.gen_range(70..200))),
            unit: Some("mg/dL".into()),
            effective_at,
        }
    }
}

fn context() -> ExportContext {
    ExportContext {
        organization: "St. Mary's".into(),
        signing_key: SigningKey::from_bytes(&[3; 32]),
        pseudonym_secret: [4; 32],
        consent_root: "ab".repeat(32),
        chain_height: 42,
        as_of: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
    }
}

fn policy(dataset: Dataset, k: usize, l: Option<usize>) -> ExportPolicy {
    ExportPolicy {
        dataset,
        columns: Vec::new(),
        birth: BirthGeneralization::AgeBand { width: 20 },
        zip: ZipGeneralization::Zip3,
        include_sex: true,
        dates: DateGeneralization::Month,
        sensitive: l.map(|_| "code".into()),
        k,
        l,
        max_suppression: 0.2,
        pseudonym_scope: PseudonymScope::PerExport,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "medvault-export-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("export")
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup",
        venv.display()
    );
    venv
}

/// Runs the independent reader check; it prints one JSON line per table.
fn read_with_python(
    dir: &Path,
    tables: &[&str],
    k: usize,
    l: usize,
    forbidden: &[String],
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_export.py");
    let output = Command::new(python())
        .arg(script)
        .arg(dir)
        .arg(tables.join(","))
        .arg(k.to_string())
        .arg(l.to_string())
        .args(forbidden)
        .output()
        .expect("run the reader check");
    assert!(
        output.status.success(),
        "reader check failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reader check prints JSON")
}

/// What no exported cell may hold: the vault's patient ids (exported only as pseudonyms) and
/// the free text of notes. Names and contact details cannot leak: `Person` has no field for them.
fn forbidden_strings(persons: &[Person]) -> Vec<String> {
    persons
        .iter()
        .take(50)
        .map(|p| hex::encode(p.patient_id))
        .chain(["free text that must not be exported".to_owned()])
        .collect()
}

#[test]
fn a_conditions_export_opens_in_three_readers_and_holds_its_k_and_l() {
    let (persons, events) = population();
    let out = scratch("conditions");
    let manifest = export(
        &policy(Dataset::Conditions, 5, Some(2)),
        &context(),
        &persons,
        || events.iter().cloned().map(Ok),
        &out,
    )
    .expect("export");
    assert!(
        manifest.k_achieved >= 5 && manifest.l_achieved >= Some(2),
        "{manifest:?}"
    );
    assert_eq!(
        manifest.persons_out + manifest.persons_suppressed,
        PERSONS as u64
    );
    assert_eq!(manifest.events_in, (PERSONS * EVENTS_PER_PERSON / 3) as u64);

    let report = read_with_python(
        &out,
        &["person", "condition_occurrence"],
        5,
        2,
        &forbidden_strings(&persons),
    );
    for table in ["person", "condition_occurrence"] {
        let file = manifest
            .files
            .iter()
            .find(|f| f.name == format!("{table}.parquet"))
            .unwrap();
        for reader in ["pyarrow", "polars", "duckdb"] {
            assert_eq!(
                report[table][reader]["rows"], file.rows,
                "{reader} reads {table}"
            );
        }
        assert_eq!(report[table]["pyarrow_ipc"]["rows"], file.rows);
    }
    assert_eq!(
        report["person"]["pyarrow"]["columns"],
        serde_json::json!(["person_id", "birth", "sex", "zip3"]),
        "no direct identifier column"
    );
    assert!(report["min_class_size"].as_u64().unwrap() >= 5, "{report}");
    assert!(
        report["min_distinct_sensitive"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["forbidden_found"], serde_json::json!([]), "{report}");

    assert_eq!(verify_export(&out).unwrap().export_id, manifest.export_id);
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[test]
fn observations_keep_numeric_values_and_drop_free_text() {
    let (persons, events) = population();
    let out = scratch("observations");
    let mut observations = policy(Dataset::Observations, 5, None);
    observations.dates = DateGeneralization::ShiftPerPerson { max_days: 30 };
    let manifest = export(
        &observations,
        &context(),
        &persons,
        || events.iter().cloned().map(Ok),
        &out,
    )
    .expect("export");
    let report = read_with_python(
        &out,
        &["person", "measurement"],
        5,
        0,
        &forbidden_strings(&persons),
    );
    assert_eq!(report["measurement"]["duckdb"]["rows"], manifest.events_out);
    assert_eq!(
        report["measurement"]["pyarrow"]["columns"],
        serde_json::json!([
            "person_id",
            "code_system",
            "code",
            "value",
            "unit",
            "event_date"
        ])
    );
    assert_eq!(report["forbidden_found"], serde_json::json!([]), "{report}");
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[test]
fn a_policy_that_cannot_be_met_fails_and_writes_nothing() {
    let (persons, events) = population();
    let out = scratch("unmet");
    let mut strict = policy(Dataset::Conditions, 200, Some(6));
    strict.birth = BirthGeneralization::AgeBand { width: 1 };
    strict.max_suppression = 0.01;
    let error = export(
        &strict,
        &context(),
        &persons,
        || events.iter().cloned().map(Ok),
        &out,
    )
    .unwrap_err();
    assert!(matches!(error, ExportError::PolicyNotMet { .. }), "{error}");
    let parent = out.parent().unwrap();
    assert_eq!(
        std::fs::read_dir(parent).unwrap().count(),
        0,
        "nothing was written"
    );
    std::fs::remove_dir_all(parent).unwrap();
}

#[test]
fn a_source_that_fails_midway_fails_the_export_and_writes_nothing() {
    let (persons, events) = population();
    let broken_off = || ExportError::Source("the database connection was reset".into());
    // With l, the read collecting sensitive values fails, before anything is written.
    let collecting = policy(Dataset::Conditions, 5, Some(2));
    // Without l, the only read is the writing one; it fails after several full batches of
    // measurements have reached the encoders, so the staging directory holds partial files.
    let writing = policy(Dataset::Observations, 5, None);
    let many_batches = 5 * 65_536;
    for (name, policy, events_before_failure) in [
        ("source-collecting", collecting, events.len() / 2),
        ("source-writing", writing, many_batches),
    ] {
        let out = scratch(name);
        let error = export(
            &policy,
            &context(),
            &persons,
            || {
                events
                    .iter()
                    .cycle()
                    .take(events_before_failure)
                    .cloned()
                    .map(Ok)
                    .chain(std::iter::once_with(|| Err(broken_off())))
            },
            &out,
        )
        .unwrap_err();
        assert!(
            matches!(&error, ExportError::Source(message) if message.contains("reset")),
            "{name}: {error}"
        );
        assert!(!out.exists(), "{name}: no export directory");
        let parent = out.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
        std::fs::remove_dir_all(parent).unwrap();
    }
}

#[test]
fn a_changed_byte_or_a_forged_manifest_fails_the_audit() {
    let (persons, events) = population();
    let out = scratch("audit");
    export(
        &policy(Dataset::Conditions, 5, None),
        &context(),
        &persons,
        || events.iter().cloned().map(Ok),
        &out,
    )
    .expect("export");
    let parquet = out.join("condition_occurrence.parquet");
    let mut bytes = std::fs::read(&parquet).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&parquet, &bytes).unwrap();
    assert!(matches!(verify_export(&out), Err(ExportError::Tampered(_))));
    bytes[middle] ^= 0x01;
    std::fs::write(&parquet, &bytes).unwrap();
    verify_export(&out).expect("restored file verifies");

    let manifest_path = out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replace("\"k_achieved\": ", "\"k_achieved\": 1"),
    )
    .unwrap();
    assert!(
        matches!(verify_export(&out), Err(ExportError::Tampered(_))),
        "an edited manifest no longer verifies"
    );
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[test]
fn two_per_export_keys_cannot_be_joined_but_one_recipient_can() {
    let (persons, _) = population();
    let patients_only = policy(Dataset::Patients, 5, None);
    let ids = |policy: &ExportPolicy, name: &str| {
        let out = scratch(name);
        export(policy, &context(), &persons, std::iter::empty, &out).expect("export");
        let report = read_with_python(&out, &["person"], 5, 0, &[]);
        std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
        report["person"]["first_ids"].clone()
    };
    assert_ne!(ids(&patients_only, "a"), ids(&patients_only, "b"));
    let recipient = ExportPolicy {
        pseudonym_scope: PseudonymScope::PerRecipient {
            recipient: "insurer-a".into(),
        },
        ..patients_only
    };
    assert_eq!(ids(&recipient, "c"), ids(&recipient, "d"));
}

#[test]
fn a_stream_of_many_batches_flows_through_both_encoders() {
    let (persons, _) = population();
    let out = scratch("stream");
    let total = 400_000usize;
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let stream = || {
        (0..total)
            .map(move |i| ClinicalEvent {
                patient_id: persons_id(i % PERSONS),
                kind: EventKind::Measurement,
                code_system: "LOINC".into(),
                code: "8867-4".into(),
                value: Some("72".into()),
                unit: Some("/min".into()),
                effective_at: start + Duration::minutes(i as i64),
            })
            .map(Ok)
    };
    let manifest = export(
        &policy(Dataset::Observations, 5, None),
        &context(),
        &persons,
        stream,
        &out,
    )
    .expect("export");
    assert_eq!(manifest.events_in, total as u64);
    assert_eq!(
        manifest.events_out,
        total as u64 * manifest.persons_out / PERSONS as u64
    );
    verify_export(&out).expect("verifies");
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

fn persons_id(index: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(index as u64).to_be_bytes());
    id
}
