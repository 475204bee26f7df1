//! The `medvault` binary as an operator uses it.

use crate::helpers::spawn_app;
use std::process::Command;

fn medvault() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medvault"))
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
        vec!["consent", "prove", "--help"],
        vec!["consent", "verify", "--help"],
        vec!["consent", "sample-witness", "--help"],
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
    let admin_create = || {
        medvault()
            .args([
                "admin",
                "create",
                "--hospital",
                "Northgate",
                "--username",
                "root-admin",
            ])
            .env("DATABASE_URL", &app.database_url)
            .env("MEDVAULT_MASTER_KEY", &app.master_key_hex)
            .env("MEDVAULT_ADMIN_PASSWORD", crate::helpers::PASSWORD)
            .output()
            .expect("run medvault admin create")
    };
    let output = admin_create();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = app.login("root-admin").await;
    let me = app
        .graphql(
            Some(&token),
            "{ me { role hospital { name } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(me.data()["me"]["role"], "ADMIN");
    assert_eq!(me.data()["me"]["hospital"]["name"], "Northgate");

    let again = admin_create();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("username is taken"));
}
