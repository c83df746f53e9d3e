//! HTTPS: certificates and what keeps them. [`certs`] loads certificates and answers each
//! handshake's SNI; [`acme`] orders certificates from an ACME server; [`store`] keeps accounts
//! and certificates on disk; [`manager`] decides which hosts need which certificate and keeps
//! them current. The HTTPS listener itself is in [`crate::server`].

pub mod acme;
pub mod certs;
pub mod manager;
pub mod store;

pub use manager::{Tls, TlsDefaults};
