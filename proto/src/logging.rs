//! Logging set-up shared by the three programs: `tracing` to stderr, filtered by
//! `RUST_LOG` (else `default`), with colours only when stderr is a terminal (container
//! logs and files get plain text).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `default` is the filter when `RUST_LOG` is unset or bad.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
