//! The network front-ends. `listener` serves a protocol over TLS on a port; `http`
//! speaks HTTP on it and routes each request to the front-end that claims it; `native`
//! is the Infisical-compatible API under `/api/v1`, `vault` the Vault Transit-compatible
//! API under `/v1/`, `console` the web console under `/ui/`. Front-ends call the operations core
//! (`crate::core`) and never touch PKCS#11, SQL or policy themselves.

pub mod aws;
mod connection;
pub mod console;
pub mod http;
pub mod listener;
mod metrics;
pub mod native;
mod tls;
pub mod vault;

pub use metrics::Metrics;
pub use tls::{mutual_tls_config, server_config, ReloadableCert};
