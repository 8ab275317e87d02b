//! baseinit's own log: `tracing` to stderr with timestamps and levels, as text
//! or as one JSON object per line (the same shape as service lines in JSON).
//!
//! PID 1 must never wait on its stderr: whoever reads it (`docker logs`, a
//! terminal) may be slow or gone. Each event is formatted into a buffer and
//! handed to a logging thread over a bounded channel; when that is full the
//! line is dropped and counted, and the thread says how many were lost once
//! stderr moves again. A closed stderr loses lines, never PID 1.

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
        .with_writer(LogWriter::start())
        .with_target(false)
        .log_internal_errors(false)
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

/// Lines waiting for the logging thread; past this, lines are dropped.
const QUEUE: usize = 1024;

/// Makes one buffer per event; the buffer goes to the logging thread when the
/// event is complete.
#[derive(Clone)]
struct LogWriter {
    lines: std::sync::mpsc::SyncSender<Queued>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

enum Queued {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The writer the subscriber uses, for [`flush`].
static WRITER: std::sync::OnceLock<LogWriter> = std::sync::OnceLock::new();

impl LogWriter {
    fn start() -> Self {
        let (lines, received) = std::sync::mpsc::sync_channel::<Queued>(QUEUE);
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lost = dropped.clone();
        // If the thread cannot start, the sender's first try fails and every
        // line is counted as dropped: baseinit runs on, silent.
        let _ = std::thread::Builder::new().name("log".into()).spawn(move || {
            use std::io::Write;
            while let Ok(message) = received.recv() {
                match message {
                    Queued::Line(line) => {
                        let mut stderr = std::io::stderr().lock();
                        let gone = lost.swap(0, std::sync::atomic::Ordering::Relaxed);
                        if gone > 0 {
                            let _ = writeln!(stderr, "baseinit: {gone} log lines dropped: stderr was blocked");
                        }
                        let _ = stderr.write_all(&line);
                    }
                    Queued::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        let writer = LogWriter { lines, dropped };
        let _ = WRITER.set(writer.clone());
        writer
    }
}

/// Waits (at most `timeout`) until every log line so far is written: before
/// exit, so the last lines are not lost with the process.
pub fn flush(timeout: std::time::Duration) {
    let Some(writer) = WRITER.get() else {
        return;
    };
    let deadline = std::time::Instant::now() + timeout;
    let (done, answered) = std::sync::mpsc::channel();
    let mut barrier = Queued::Barrier(done);
    loop {
        match writer.lines.try_send(barrier) {
            Ok(()) => break,
            Err(std::sync::mpsc::TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                barrier = back;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = answered.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// One event's bytes, sent on drop.
struct EventBuffer {
    bytes: Vec<u8>,
    writer: LogWriter,
}

impl std::io::Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.bytes);
        if self.writer.lines.try_send(Queued::Line(bytes)).is_err() {
            self.writer.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = EventBuffer;
    fn make_writer(&'a self) -> EventBuffer {
        EventBuffer {
            bytes: Vec::new(),
            writer: self.clone(),
        }
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
