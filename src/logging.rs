//! baseinit's own log: `tracing` to stderr with timestamps and levels, as text
//! or as one JSON object per line (the same shape as service lines in JSON).
//!
//! PID 1 must never wait on its stderr: whoever reads it (`docker logs`, a
//! terminal) may be slow or gone. Each event is formatted into a buffer and
//! handed to a logging thread; past [`QUEUE`] lines waiting, a line is dropped
//! and counted, and the thread says how many were lost once stderr moves
//! again. A closed stderr loses lines, never PID 1.
//!
//! The subscriber is this module's own, not `tracing_subscriber::fmt`: that
//! one needs its span registry (a table allocated up front, and code)
//! and baseinit has no spans. PID 1 keeps whatever it maps for the life of
//! the container. The text lines look as `fmt`'s did: `TIMESTAMP LEVEL
//! message name=value`.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};

/// Installs the subscriber. `BASEINIT_LOG` (a level such as `debug`, or
/// `target=level` directives separated by commas) wins over `--quiet` and
/// `--verbose`.
pub fn init(quiet: bool, verbose: bool, json: bool) {
    let default = if quiet {
        Level::WARN
    } else if verbose {
        Level::DEBUG
    } else {
        Level::INFO
    };
    let mut bad_directive = None;
    let filter = match std::env::var("BASEINIT_LOG") {
        Ok(directive) if !directive.trim().is_empty() => directive.parse::<Targets>().unwrap_or_else(|e| {
            bad_directive = Some(format!("ignoring BASEINIT_LOG={directive:?}: {e}"));
            Targets::new().with_default(default)
        }),
        _ => Targets::new().with_default(default),
    };
    let style = if json {
        Style::Json
    } else if std::io::stderr().is_terminal() {
        Style::Ansi
    } else {
        Style::Text
    };
    let log = Log {
        max_level: max_level(&filter),
        filter,
        style,
        writer: LogWriter::start(),
    };
    // Only fails if a subscriber is already set (a second init): keep it.
    let _ = tracing::subscriber::set_global_default(log);
    if let Some(message) = bad_directive {
        tracing::warn!("{message}");
    }
}

/// The most verbose level any directive enables.
fn max_level(filter: &Targets) -> LevelFilter {
    let targets = filter.iter().map(|(_, level)| level);
    targets.chain(filter.default_level()).max().unwrap_or(LevelFilter::OFF)
}

/// How a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Text,
    /// Text with colours, for a terminal.
    Ansi,
    Json,
}

/// The subscriber: events only (baseinit opens no span).
struct Log {
    filter: Targets,
    max_level: LevelFilter,
    style: Style,
    writer: LogWriter,
}

impl Subscriber for Log {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.would_enable(metadata.target(), metadata.level())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = format_event(self.style, event, std::time::SystemTime::now());
        let held = BATCH.with(|batch| match batch.borrow_mut().as_mut() {
            Some(held) => {
                held.lines.extend_from_slice(line.as_bytes());
                held.count += 1;
                held.writer.get_or_insert_with(|| self.writer.clone());
                true
            }
            None => false,
        });
        if !held {
            self.writer.send(line.into_bytes(), 1);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// One event as a line, newline included.
fn format_event(style: Style, event: &Event<'_>, now: std::time::SystemTime) -> String {
    let timestamp = humantime::format_rfc3339_micros(now);
    let level = *event.metadata().level();
    if style == Style::Json {
        let mut message = Message {
            text: String::new(),
            start: 0,
            escape: false,
            italic: false,
        };
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
            timestamp: timestamp.to_string(),
            level: level.as_str().to_ascii_lowercase(),
            service: "baseinit",
            stream: "stderr",
            message: message.text,
        };
        // Serializing strings cannot fail.
        let mut json = serde_json::to_string(&line).unwrap_or_default();
        json.push('\n');
        return json;
    }
    let ansi = style == Style::Ansi;
    let mut text = String::with_capacity(128);
    let label = match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        _ => "ERROR",
    };
    if ansi {
        let colour = match level {
            Level::TRACE => "35",
            Level::DEBUG => "34",
            Level::INFO => "32",
            Level::WARN => "33",
            _ => "31",
        };
        let _ = write!(text, "\x1b[2m{timestamp}\x1b[0m \x1b[{colour}m{label}\x1b[0m ");
    } else {
        let _ = write!(text, "{timestamp} {label} ");
    }
    let mut message = Message {
        start: text.len(),
        text,
        escape: true,
        italic: ansi,
    };
    event.record(&mut message);
    message.text.push('\n');
    message.text
}

/// The event's fields, in order and separated by spaces: the message as it
/// is, any other field as `name=value`.
struct Message {
    text: String,
    /// Where the fields start in `text`.
    start: usize,
    /// Control characters that drive a terminal (ESC, BEL, …) are written as
    /// escapes: a service name or a path must not restyle the terminal.
    escape: bool,
    /// Field names in italics (a terminal).
    italic: bool,
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.text.len() > self.start {
            self.text.push(' ');
        }
        let name = field.name();
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.italic {
                let _ = write!(self.text, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m");
            } else {
                let _ = write!(self.text, "{name}=");
            }
        }
        if self.escape {
            let _ = write!(Escaping(&mut self.text), "{value:?}");
        } else {
            let _ = write!(self.text, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// Writes terminal control characters as visible escapes.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => write!(self.0, "\\x{:02x}", c as u32)?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// Lines waiting for the logging thread; past this, lines are dropped.
const QUEUE: usize = 1024;

/// The logging thread's end.
#[derive(Clone)]
struct LogWriter {
    // Unbounded, so that nothing is allocated for lines that never come (a
    // bounded channel allocates its every slot up front); `waiting` bounds it.
    lines: std::sync::mpsc::Sender<Queued>,
    waiting: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
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
        let (lines, received) = std::sync::mpsc::channel::<Queued>();
        let writer = LogWriter {
            lines,
            waiting: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let (waiting, lost) = (writer.waiting.clone(), writer.dropped.clone());
        // If the thread cannot start, the channel is closed and every line is
        // counted as dropped: baseinit runs on, silent.
        let _ = std::thread::Builder::new().name("log".into()).spawn(move || {
            use std::io::Write;
            while let Ok(message) = received.recv() {
                match message {
                    Queued::Line(line) => {
                        let mut stderr = std::io::stderr().lock();
                        let gone = lost.swap(0, Ordering::Relaxed);
                        if gone > 0 {
                            let _ = writeln!(stderr, "baseinit: {gone} log lines dropped: stderr was blocked");
                        }
                        let _ = stderr.write_all(&line);
                        // Release: `flush` that sees the count drop sees the write done.
                        waiting.fetch_sub(1, Ordering::Release);
                    }
                    Queued::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        let _ = WRITER.set(writer.clone());
        writer
    }

    /// Queues `count` lines as one write, or drops and counts them when the
    /// queue is full.
    fn send(&self, lines: Vec<u8>, count: u64) {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(count, Ordering::Relaxed);
            return;
        }
        if self.lines.send(Queued::Line(lines)).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(count, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// This thread's lines while a [`Batch`] is held.
    static BATCH: std::cell::RefCell<Option<Held>> = const { std::cell::RefCell::new(None) };
}

/// The lines a [`Batch`] keeps, and the writer they go to.
#[derive(Default)]
struct Held {
    lines: Vec<u8>,
    count: u64,
    writer: Option<LogWriter>,
}

/// While held, this thread's log lines are kept and handed to the logging
/// thread as one write when it is dropped. Waking that thread costs two
/// context switches per line; at boot, with the services starting on the
/// same cores, a wake per "started" line would slow the boot down.
/// Hold it only over work that does not wait: the lines are late by as long
/// as it is held. Nested batches add to the outermost one.
#[must_use = "the lines are sent when the batch is dropped"]
pub struct Batch {
    outermost: bool,
}

/// Starts a [`Batch`] on this thread.
pub fn batch() -> Batch {
    let outermost = BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        if batch.is_some() {
            return false;
        }
        *batch = Some(Held::default());
        true
    });
    Batch { outermost }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        if let Some(Held {
            lines,
            count,
            writer: Some(writer),
        }) = BATCH.with(|batch| batch.borrow_mut().take())
        {
            writer.send(lines, count);
        }
    }
}

/// Waits (at most `timeout`) until every log line so far is written: before
/// exit, so the last lines are not lost with the process. Returns at once
/// when they are (the thread usually wrote them while baseinit shut down):
/// a round trip through an idle thread would lengthen the stop on a busy
/// machine.
pub fn flush(timeout: std::time::Duration) {
    let Some(writer) = WRITER.get() else {
        return;
    };
    if writer.waiting.load(Ordering::Acquire) == 0 {
        return;
    }
    let (done, answered) = std::sync::mpsc::channel();
    if writer.lines.send(Queued::Barrier(done)).is_ok() {
        let _ = answered.recv_timeout(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats the events `emit` makes, as `style` would, at 2026-01-02.
    fn lines(style: Style, emit: impl FnOnce()) -> Vec<String> {
        struct Capture(Style, std::sync::Mutex<Vec<String>>);
        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &Event<'_>) {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_767_312_000_000_123);
                self.1.lock().unwrap().push(format_event(self.0, event, at));
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
        let capture = Arc::new(Capture(style, std::sync::Mutex::new(Vec::new())));
        tracing::subscriber::with_default(capture.clone(), emit);
        capture.1.lock().unwrap().clone()
    }

    #[test]
    fn a_batch_hands_its_lines_over_as_one_write_when_dropped() {
        let (sender, received) = std::sync::mpsc::channel();
        let writer = LogWriter {
            lines: sender,
            waiting: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let log = Log {
            filter: Targets::new().with_default(Level::INFO),
            max_level: LevelFilter::INFO,
            style: Style::Text,
            writer: writer.clone(),
        };
        let written = || -> Vec<String> {
            received
                .try_iter()
                .map(|q| match q {
                    Queued::Line(bytes) => String::from_utf8(bytes).unwrap(),
                    Queued::Barrier(_) => "barrier".into(),
                })
                .collect()
        };
        tracing::subscriber::with_default(log, || {
            tracing::info!("alone");
            assert_eq!(written().len(), 1, "without a batch, each line at once");
            {
                let _batch = batch();
                tracing::info!("one");
                {
                    let _inner = batch();
                    tracing::info!("two");
                }
                assert!(written().is_empty(), "nothing before the outermost batch ends");
                tracing::info!("three");
            }
            let out = written();
            assert_eq!(out.len(), 1, "one write: {out:?}");
            let ends: Vec<&str> = out[0].lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
            assert_eq!(ends, ["one", "two", "three"]);
            assert_eq!(writer.waiting.load(Ordering::Relaxed), 2);
            drop(batch());
            assert!(written().is_empty(), "an empty batch writes nothing");
        });
    }

    #[test]
    fn a_full_queue_counts_every_line_of_a_dropped_batch() {
        let (sender, _received) = std::sync::mpsc::channel();
        let writer = LogWriter {
            lines: sender,
            waiting: Arc::new(AtomicUsize::new(QUEUE)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        writer.send(b"a\nb\nc\n".to_vec(), 3);
        assert_eq!(writer.dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn text_lines_look_like_tracing_fmt() {
        let out = lines(Style::Text, || {
            tracing::info!("service {} started", "web");
            tracing::warn!(code = 3, "gave up");
            tracing::error!("bad");
            tracing::debug!("details");
        });
        assert_eq!(
            out,
            [
                "2026-01-02T00:00:00.000123Z  INFO service web started\n",
                "2026-01-02T00:00:00.000123Z  WARN gave up code=3\n",
                "2026-01-02T00:00:00.000123Z ERROR bad\n",
                "2026-01-02T00:00:00.000123Z DEBUG details\n",
            ]
        );
    }

    #[test]
    fn terminal_control_characters_are_escaped() {
        let out = lines(Style::Text, || tracing::warn!("name \x1b[31mred\x07 \u{9b}"));
        assert!(
            out[0].ends_with(" WARN name \\x1b[31mred\\x07 \\u{9b}\n"),
            "{:?}",
            out[0]
        );
        let out = lines(Style::Ansi, || tracing::info!("x\x1by"));
        assert_eq!(
            out[0],
            "\x1b[2m2026-01-02T00:00:00.000123Z\x1b[0m \x1b[32m INFO\x1b[0m x\\x1by\n"
        );
    }

    #[test]
    fn json_lines_have_the_service_line_shape() {
        let out = lines(Style::Json, || tracing::warn!("said \"hi\"\x1b"));
        let v: serde_json::Value = serde_json::from_str(out[0].trim_end()).unwrap();
        assert_eq!(v["timestamp"], "2026-01-02T00:00:00.000123Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["service"], "baseinit");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["message"], "said \"hi\"\x1b");
    }

    #[test]
    fn the_most_verbose_directive_sets_the_max_level() {
        assert_eq!(max_level(&"warn".parse().unwrap()), LevelFilter::WARN);
        assert_eq!(
            max_level(&"warn,baseinit::supervisor=debug".parse().unwrap()),
            LevelFilter::DEBUG
        );
        assert_eq!(max_level(&"baseinit=trace".parse().unwrap()), LevelFilter::TRACE);
        assert_eq!(max_level(&Targets::new()), LevelFilter::OFF);
    }
}
