//! Logging: `tracing` to standard error, for people on a terminal or as JSON lines for machines.
//! The level comes from `RUST_LOG` (default `info`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Calling it twice keeps the first.
///
/// JSON lines carry the fields of the spans they happen in (the run's id, the target, the phase).
/// Colour is used only on a terminal. Under systemd (`JOURNAL_STREAM` set) text lines carry no
/// timestamp of their own: the journal stamps every line.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log pipe that closes (a reader that went away) must not take roster down: by default
        // the subscriber reports a failed write with `eprintln!`, which panics on that same pipe.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match (format, journal) {
        (LogFormat::Text, false) => builder.compact().with_target(false).try_init(),
        (LogFormat::Text, true) => builder
            .compact()
            .with_target(false)
            .without_time()
            .try_init(),
        (LogFormat::Json, _) => builder
            .json()
            // `target` is the target system's name (a span field), not a Rust module path.
            .with_target(false)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}
