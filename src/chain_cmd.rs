//! `medvault chain` and `medvault audit`: the command-line face of `medvault-anchor-chain`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ChainCommand {}

#[derive(Subcommand)]
pub enum AuditCommand {}

pub fn chain(command: ChainCommand) -> anyhow::Result<()> {
    match command {}
}

pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {}
}
