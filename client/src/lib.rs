//! A doctor's client of a medvault server: GraphQL over HTTP, with consent proven on the
//! doctor's machine.
//!
//! The doctor keeps a [`GranteeSecret`](medvault_circuits::GranteeSecret) in a file of their
//! own and registers only its commitment. To open a patient's records, the client asks the
//! server for a challenge and for the doctor's grant (its leaf's path in the patient's consent
//! tree), proves in zero knowledge that the secret behind a leaf of that tree covers the scope
//! asked for, and sends the proof; the server opens a consent session on the client's bearer
//! token. The secret never leaves the machine.
//!
//! Module map, bottom up: [`error`](ClientError); `graphql` (the envelope, no I/O);
//! `proving_key` (the hash check and the key cache); `consent` (the contract's consent answers
//! as the circuit's types, the native statement check, proving); `client` ([`MedvaultClient`],
//! the only module that does network I/O).
//!
//! Invariant: **the client depends on `medvault-circuits` and never on `medvault-server` or
//! `medvault-vault`**: it knows the server by its GraphQL contract alone, like any other client.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod consent;
mod error;
mod graphql;
mod proving_key;

pub use client::{LoggedIn, MedvaultClient};
pub use consent::{
    AccessScope, ConsentChallenge, ConsentKeys, GrantWitness, OpenedConsent, PreparedOpening,
    RegisteredKey,
};
pub use error::{ClientError, StatementError};

#[cfg(test)]
mod tests {
    /// The invariant above, kept by the manifest: no server crate among the dependencies.
    #[test]
    fn the_client_depends_on_no_server_crate() {
        let manifest = include_str!("../Cargo.toml");
        assert!(manifest.contains("medvault-circuits.workspace = true"));
        for server in ["medvault-server", "medvault-vault"] {
            assert!(
                !manifest
                    .lines()
                    .any(|line| line.trim_start().starts_with(server)),
                "the client depends on {server}"
            );
        }
    }
}
