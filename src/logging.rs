//! Log output: text or JSON lines on stderr. Nothing secret is ever passed to a log call.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber: `json` for JSON lines, anything else for text. The level
/// comes from `RUST_LOG`, else `KMSGW__LOG__LEVEL` (default `info`). Safe to call twice
/// (the second call does nothing).
pub fn init(format: Option<&str>) {
    let level = std::env::var("KMSGW__LOG__LEVEL").unwrap_or_else(|_| "info".into());
    // cryptoki logs every mechanism it has no name for at ERROR; that is noise.
    let quiet = "cryptoki::mechanism=off"
        .parse()
        .expect("a valid directive");
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level))
        .add_directive(quiet);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: files, journald and containers get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format.is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}
