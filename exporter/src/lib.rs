//! Anonymized Arrow IPC and Parquet exports with a signed manifest.
