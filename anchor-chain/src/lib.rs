//! The permissioned anchor chain of the member hospitals.
