//! Groth16 consent proofs over BN254 with a Poseidon Merkle tree.
