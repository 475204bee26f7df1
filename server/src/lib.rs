//! The medvault server.
