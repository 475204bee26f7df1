//! `medvault keys` and `medvault consent`: the command-line face of `medvault-circuits`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeysCommand {}

#[derive(Subcommand)]
pub enum ConsentCommand {}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {}
}

pub fn consent(command: ConsentCommand) -> anyhow::Result<()> {
    match command {}
}
