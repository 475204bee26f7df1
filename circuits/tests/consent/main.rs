//! The integration tests of `medvault-circuits`, one module per theme. They run the real prover
//! at depth 4 with fixed seeds.

mod batch;
mod ceremony;
mod circuit;
mod decoding;
mod keys;
mod proofs;
mod support;
mod tree;
