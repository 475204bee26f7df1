//! Why an export or its audit failed.

/// An export that cannot be made, or an export directory that does not check out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The policy is malformed or asks for something unsupported.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// The policy asks for more detail or less anonymity than its requester's ceiling allows;
    /// the message names every rule broken, what was asked and what the ceiling allows.
    #[error("above the export ceiling: {0}")]
    AboveCeiling(String),
    /// The data cannot be made k-anonymous (and l-diverse) within the allowed suppression.
    #[error(
        "policy cannot be met: {suppressed} of {persons} persons ({rate:.1}%) would be suppressed \
         for k = {k}{l_part}, above the allowed {max_rate:.1}%",
        l_part = l.map(|l| format!(", l = {l}")).unwrap_or_default()
    )]
    PolicyNotMet {
        /// Persons that would have to be removed.
        suppressed: usize,
        /// Persons in the input.
        persons: usize,
        /// Their share, in percent.
        rate: f64,
        /// The policy's k.
        k: usize,
        /// The policy's l, if any.
        l: Option<usize>,
        /// The allowed share, in percent.
        max_rate: f64,
    },
    /// The caller's data source failed while the export was reading it (a database read that
    /// broke off mid-way, for example); the export stops and writes nothing.
    #[error("reading the data to export: {0}")]
    Source(String),
    /// Writing the files failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// Arrow refused a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Parquet refused a batch.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The manifest is missing, malformed, or does not match the files or its signature.
    #[error("export does not verify: {0}")]
    Tampered(String),
}
