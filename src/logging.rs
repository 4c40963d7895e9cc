//! Log output: text or JSON lines on stderr. Nothing secret is ever passed to a log call.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `KMSGW__LOG__FORMAT=json` selects JSON, `RUST_LOG` or
/// `KMSGW__LOG__LEVEL` the level. Safe to call twice (the second call does nothing).
pub fn init_from_env() {
    let level = std::env::var("KMSGW__LOG__LEVEL").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},cryptoki::mechanism=off")));
    let json = std::env::var("KMSGW__LOG__FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
