//! Log output: on stderr (stdout is the banner), as text or one JSON object
//! per line, coloured only when stderr is a terminal.

use std::io::IsTerminal as _;

use dps_service::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber: `RUST_LOG` if set, else `info`.
pub(crate) fn init(format: LogFormat) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut filter = EnvFilter::new(from_env.as_deref().unwrap_or("info"));
    // rustls warns "Illegal SNI extension" for every client that dials an IP
    // address: noise, not a fault. Kept unless RUST_LOG asks about rustls.
    if !from_env.as_deref().is_some_and(|v| v.contains("rustls")) {
        if let Ok(directive) = "rustls=error".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
