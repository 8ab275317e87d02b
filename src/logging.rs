//! baseinit's own log: `tracing` to stderr with timestamps and levels.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. `BASEINIT_LOG` (an EnvFilter directive such as
/// `debug`) wins over `--quiet` and `--verbose`.
pub fn init(quiet: bool, verbose: bool) {
    let default = if quiet {
        "warn"
    } else if verbose {
        "debug"
    } else {
        "info"
    };
    let mut bad_directive = None;
    let filter = match std::env::var("BASEINIT_LOG") {
        Ok(directive) if !directive.trim().is_empty() => EnvFilter::try_new(&directive).unwrap_or_else(|e| {
            bad_directive = Some(format!("ignoring BASEINIT_LOG={directive:?}: {e}"));
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(message) = bad_directive {
        tracing::warn!("{message}");
    }
}
