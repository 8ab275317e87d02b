//! baseinit's own log: `tracing` to stderr with timestamps and levels, as text
//! or as one JSON object per line (the same shape as service lines in JSON).

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber. `BASEINIT_LOG` (an EnvFilter directive such as
/// `debug`) wins over `--quiet` and `--verbose`.
pub fn init(quiet: bool, verbose: bool, json: bool) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!json && std::io::stderr().is_terminal());
    if json {
        builder.event_format(JsonEvent).init();
    } else {
        builder.init();
    }
    if let Some(message) = bad_directive {
        tracing::warn!("{message}");
    }
}

/// `{"timestamp","level","service":"baseinit","stream":"stderr","message"}`.
struct JsonEvent;

impl<S, N> FormatEvent<S, N> for JsonEvent
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut message = Message(String::new());
        event.record(&mut message);
        // The same fields, in the same order, as a service line in JSON.
        #[derive(serde::Serialize)]
        struct Line<'a> {
            timestamp: String,
            level: String,
            service: &'a str,
            stream: &'a str,
            message: String,
        }
        let line = Line {
            timestamp: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            level: event.metadata().level().as_str().to_ascii_lowercase(),
            service: "baseinit",
            stream: "stderr",
            message: message.0,
        };
        let json = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{json}")
    }
}

/// The event's message, with any other fields appended as `name=value`.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
