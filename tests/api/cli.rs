//! The `medvault` binary as an operator uses it.

use crate::helpers::{consent_keys, spawn_app};
use serde_json::json;
use std::process::Command;

/// The binary, with the test binary's consent keys (so no command makes keys of its own).
fn medvault() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_medvault"));
    command.env("MEDVAULT_CONSENT_KEYS", &consent_keys().0);
    command
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["serve", "--help"],
        vec!["admin", "--help"],
        vec!["admin", "create", "--help"],
        vec!["schema", "--help"],
        vec!["keys", "setup", "--help"],
        vec!["keys", "constraints", "--help"],
        vec!["keys", "ceremony", "init", "--help"],
        vec!["keys", "ceremony", "contribute", "--help"],
        vec!["keys", "ceremony", "verify", "--help"],
        vec!["keys", "ceremony", "finalize", "--help"],
        vec!["consent", "prove", "--help"],
        vec!["consent", "verify", "--help"],
        vec!["consent", "sample-witness", "--help"],
        vec!["doctor", "keygen", "--help"],
        vec!["doctor", "register", "--help"],
        vec!["doctor", "open", "--help"],
        vec!["doctor", "read", "--help"],
        vec!["chain", "keygen", "--help"],
        vec!["chain", "genesis", "--help"],
        vec!["chain", "node", "--help"],
        vec!["chain", "approve", "--help"],
        vec!["chain", "govern", "--help"],
        vec!["audit", "chain", "--help"],
        vec!["audit", "entry", "--help"],
        vec!["audit", "export", "--help"],
        vec!["export", "--help"],
    ] {
        let output = medvault().args(&args).output().expect("run medvault");
        assert!(output.status.success(), "medvault {args:?} --help failed");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

/// Two hospitals run the ceremony at depth 1 through the binary, one file handed from one to the
/// next; the finalized keys prove and verify a consent statement.
#[test]
fn a_ceremony_makes_keys_that_prove_and_verify() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let run = |args: &[&str]| {
        let output = medvault().args(args).output().expect("run medvault");
        assert!(
            output.status.success(),
            "medvault {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&[
        "keys",
        "ceremony",
        "init",
        "--depth",
        "1",
        "--out",
        &path("t0"),
    ]);
    let steps = [
        ("t0", "t1", "st-mary", "tau"),
        ("t1", "t2", "city-general", "tau"),
        ("t2", "t3", "st-mary", "circuit"),
        ("t3", "t4", "city-general", "circuit"),
    ];
    for (from, to, name, phase) in steps {
        let transcript = path(from);
        let out = path(to);
        run(&[
            "keys",
            "ceremony",
            "contribute",
            "--transcript",
            &transcript,
            "--out",
            &out,
            "--name",
            name,
            "--phase",
            phase,
        ]);
    }
    let verified = run(&["keys", "ceremony", "verify", "--transcript", &path("t4")]);
    assert!(verified.contains("4 contributions"), "{verified}");
    let keys = path("keys");
    run(&[
        "keys",
        "ceremony",
        "finalize",
        "--transcript",
        &path("t4"),
        "--out",
        &keys,
    ]);
    assert!(dir
        .path()
        .join("keys/ceremony_transcript.sha3-256")
        .exists());
    // A tau contribution after the circuit phase began is refused.
    let refused = medvault()
        .args([
            "keys",
            "ceremony",
            "contribute",
            "--transcript",
            &path("t4"),
        ])
        .args(["--out", &path("t5"), "--name", "late", "--phase", "tau"])
        .output()
        .expect("run medvault");
    assert!(!refused.status.success());

    run(&[
        "consent",
        "sample-witness",
        "--depth",
        "1",
        "--out",
        &path("witness.json"),
    ]);
    let challenge = format!("0x{:064x}", 0xab);
    let proof = path("proof.json");
    run(&[
        "consent",
        "prove",
        "--keys",
        &keys,
        "--witness",
        &path("witness.json"),
        "--challenge",
        &challenge,
        "--out",
        &proof,
    ]);
    let verdict = run(&["consent", "verify", "--keys", &keys, "--proof", &proof]);
    assert!(verdict.contains("\"valid\": true"), "{verdict}");
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let output = medvault()
        .arg("schema")
        .output()
        .expect("run medvault schema");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql");
    assert_eq!(String::from_utf8_lossy(&output.stdout), committed);
}

#[tokio::test]
async fn admin_create_bootstraps_an_admin_who_can_log_in() {
    let app = spawn_app().await;
    let chain_dir = tempfile::tempdir().expect("a chain directory");
    let admin_create = |hospital: &str| {
        medvault()
            .args([
                "admin",
                "create",
                "--hospital",
                hospital,
                "--username",
                "root-admin",
            ])
            .arg("--chain-dir")
            .arg(chain_dir.path())
            .env("DATABASE_URL", &app.database_url)
            .env("MEDVAULT_MASTER_KEY", &app.master_key_hex)
            .env("MEDVAULT_ADMIN_PASSWORD", crate::helpers::PASSWORD)
            .output()
            .expect("run medvault admin create")
    };
    let output = admin_create("Northgate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = app.login("root-admin").await;
    let me = app
        .graphql(Some(&token), "{ me { role hospital { name } } }", json!({}))
        .await;
    assert_eq!(me.data()["me"]["role"], "ADMIN");
    assert_eq!(me.data()["me"]["hospital"]["name"], "Northgate");

    let again = admin_create("Northgate");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("username is taken"));

    // The first hospital founded the embedded chain; another is not a member of it.
    let outsider = admin_create("Westbrook");
    let stderr = String::from_utf8_lossy(&outsider.stderr);
    assert!(
        !outsider.status.success()
            && stderr.contains(
                "\"Westbrook\" is not a member of the anchor chain (its members: Northgate)"
            )
            && stderr.contains("medvault chain approve")
            && stderr.contains("medvault chain govern")
            && stderr.contains(r#""action":"admit""#),
        "{stderr}"
    );
}

// Multi-threaded: the commands block this thread while the server answers them on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_keygens_registers_opens_and_reads_from_the_command_line() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, _) = app.create_doctor_without_key(&admin, "dr-cli").await;
    let (patient_id, patient) = app.create_patient(&admin, "jane", "Jane Roe").await;
    let dir = tempfile::tempdir().expect("a directory");
    let secret = dir.path().join("dr-cli.secret");
    let doctor = |args: &[&str]| {
        let output = medvault()
            .arg("doctor")
            .args(args)
            .arg("--secret")
            .arg(&secret)
            .env("MEDVAULT_SERVER", &app.address)
            .env("MEDVAULT_PASSWORD", crate::helpers::PASSWORD)
            .output()
            .expect("run medvault doctor");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (made, out, err) = doctor(&["keygen"]);
    assert!(made, "{err}");
    assert!(out.contains("commitment: 0x"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret)
        .expect("secret")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (again, _, err) = doctor(&["keygen"]);
    assert!(!again && err.contains("already exists"), "{err}");

    let (registered, out, err) = doctor(&["register", "--username", "dr-cli"]);
    assert!(registered, "{err}");
    assert!(out.contains("registered commitment"), "{out}");
    app.grant(&patient, &doctor_id, &["READ"]).await;

    let session = ["--username", "dr-cli", "--patient", patient_id.as_str()];
    let (opened, out, err) = doctor(&[&["open"][..], &session[..]].concat());
    assert!(opened, "{err}");
    let token = out
        .lines()
        .find_map(|line| line.strip_prefix("token:"))
        .map(str::trim)
        .expect("the token is printed")
        .to_owned();
    app.graphql(
        Some(&token),
        "query($id: ID!) { patient(id: $id) { personal { fullName } } }",
        json!({ "id": patient_id }),
    )
    .await
    .data();

    let (read, out, err) = doctor(&[&["read"][..], &session[..]].concat());
    assert!(read, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).ok(),
        Some(json!([]))
    );
    let (refused, _, err) = doctor(&[
        "open",
        "--username",
        "dr-cli",
        "--patient",
        "00000000-0000-0000-0000-000000000000",
    ]);
    assert!(!refused && err.contains("FORBIDDEN"), "{err}");
}
