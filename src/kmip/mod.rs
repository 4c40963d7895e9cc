//! The KMIP front-end: a KMIP server (TTLV over mutually authenticated TLS) on its own
//! port, whose operations are thin adapters over the operations core.

pub mod ttlv;
