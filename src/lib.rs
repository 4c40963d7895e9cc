//! KMS Gateway: an on-premises key-management gateway in front of a PKCS#11 HSM.
//! See docs/ARCHITECTURE.md for the map of the modules.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod core;
pub mod crypto;
pub mod fragments;
pub mod hsm;
pub mod keys;
pub mod kmip;
pub mod logging;
pub mod metrics;
pub mod random;
pub mod store;
