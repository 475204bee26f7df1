//! `medvault`: the one binary. Command-line definition and glue only; the work lives in the
//! workspace crates (`server`, `circuits`, `anchor-chain`, `exporter`, `client`).

mod chain_cmd;
mod consent_cmd;
mod doctor_cmd;
mod export_cmd;
mod vault_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "medvault",
    version,
    about = "Encrypted, consent-proven medical record vault"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seed a synthetic data set on a private PostgreSQL cluster and serve it with GraphiQL.
    Demo(vault_cmd::DemoArgs),
    /// Serve the GraphQL API against the configured PostgreSQL.
    Serve(vault_cmd::ServeArgs),
    /// Administer hospitals and their users.
    #[command(subcommand)]
    Admin(vault_cmd::AdminCommand),
    /// Print the GraphQL schema (SDL), as committed in schema.graphql.
    Schema,
    /// Generate Groth16 keys for the consent circuit.
    #[command(subcommand)]
    Keys(consent_cmd::KeysCommand),
    /// Prove and verify patient consent.
    #[command(subcommand)]
    Consent(consent_cmd::ConsentCommand),
    /// A doctor's side of consent: keep a grantee secret, register it, prove consent and read.
    #[command(subcommand)]
    Doctor(doctor_cmd::DoctorCommand),
    /// Run a validator of the anchor chain.
    #[command(subcommand)]
    Chain(chain_cmd::ChainCommand),
    /// Make an anonymized export for a recipient from the vault's database.
    Export(export_cmd::ExportArgs),
    /// Verify anchored evidence without trusting any server.
    #[command(subcommand)]
    Audit(chain_cmd::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => vault_cmd::demo(args),
        Command::Serve(args) => vault_cmd::serve(args),
        Command::Admin(command) => vault_cmd::admin(command),
        Command::Schema => vault_cmd::schema(),
        Command::Keys(command) => consent_cmd::keys(command),
        Command::Consent(command) => consent_cmd::consent(command),
        Command::Doctor(command) => doctor_cmd::doctor(command),
        Command::Chain(command) => chain_cmd::chain(command),
        Command::Export(args) => export_cmd::export(args),
        Command::Audit(command) => chain_cmd::audit(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
