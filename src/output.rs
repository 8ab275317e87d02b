//! Services' stdout and stderr: read from pipes, split into whole lines,
//! prefixed with the service's name (or made JSON), and written to baseinit's
//! own stdout and stderr by one writer.
//!
//! Each process baseinit starts for a service (`run`, `finish`, a `control/`
//! script) gets fresh pipes for its stdout and stderr; baseinit keeps no
//! write end, so a pipe's EOF is exactly the end of that process (and of
//! what it left behind holding the pipe). A reader task per pipe turns bytes
//! into lines (at most [`MAX_LINE`] bytes held; a longer line is split with a
//! visible marker), writes out a last line without newline at EOF, and sends
//! them over a bounded channel to a single writer thread, which owns
//! baseinit's stdout and stderr. One
//! writer means lines from different services never tear into each other,
//! whatever their length. When baseinit's stdout is slow, the writer blocks,
//! the channel fills, the readers stop reading and the services block on
//! their own writes: back-pressure, no dropped line, and the supervisor task
//! never waits on any of it.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use serde::Serialize;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

/// The longest line held before it is split.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines in flight between the readers and the writer (at most
/// `CHANNEL * MAX_LINE` bytes).
const CHANNEL: usize = 64;
/// Appended to the pieces of a split line but the last.
pub const CONTINUED: &str = " [line continues]";

/// Which of the service's streams, and so which of baseinit's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How service lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `name | line` (and `name (stderr) | line`)
    Text,
    /// One JSON object per line: timestamp, level, service, stream, message
    Json,
}

/// How lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub format: Format,
    /// Text format: a timestamp before the prefix.
    pub timestamps: bool,
}

/// A finished line, ready to write.
struct Line {
    stream: Stream,
    bytes: Vec<u8>,
}

/// The writer thread's end: readers are made from it.
#[derive(Clone)]
pub struct Sink {
    lines: Outbox,
    style: Style,
}

/// Where readers send lines, counting those not yet written.
#[derive(Clone)]
struct Outbox {
    lines: mpsc::Sender<Line>,
    /// Lines sent and not yet written out by the thread.
    unwritten: Arc<AtomicUsize>,
}

impl Outbox {
    /// False when the writer thread is gone.
    async fn send(&self, line: Line) -> bool {
        self.unwritten.fetch_add(1, Ordering::Relaxed);
        let sent = self.lines.send(line).await.is_ok();
        if !sent {
            self.unwritten.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }
}

/// Starts the writer thread; `finish` waits for it.
pub fn start(style: Style) -> io::Result<(Sink, Writer)> {
    let (lines, mut received) = mpsc::channel::<Line>(CHANNEL);
    let (done, finished) = std::sync::mpsc::channel();
    let unwritten = Arc::new(AtomicUsize::new(0));
    let written = unwritten.clone();
    std::thread::Builder::new().name("output".into()).spawn(move || {
        let (stdout, stderr) = (io::stdout(), io::stderr());
        while let Some(line) = received.blocking_recv() {
            // A closed or failing stdout loses lines, never PID 1.
            let _ = match line.stream {
                Stream::Stdout => stdout.lock().write_all(&line.bytes),
                Stream::Stderr => stderr.lock().write_all(&line.bytes),
            };
            written.fetch_sub(1, Ordering::Release);
        }
        let _ = done.send(());
    })?;
    let outbox = Outbox {
        lines,
        unwritten: unwritten.clone(),
    };
    Ok((Sink { lines: outbox, style }, Writer { finished, unwritten }))
}

/// The writer thread, to wait for at exit.
pub struct Writer {
    finished: std::sync::mpsc::Receiver<()>,
    unwritten: Arc<AtomicUsize>,
}

impl Writer {
    /// Waits until every line sent has been written, or until `deadline` (a
    /// stdout nobody reads must not keep PID 1 from exiting). `sink` is the
    /// last sender (the readers' are gone). When every line is written
    /// already, it returns at once and leaves the idle thread asleep, to
    /// end with the process: closing the channel would wake it only to hear
    /// it end, and a thread that ends frees its stack, on the CPU the last
    /// log line then waits for, which lengthens the stop on a busy machine.
    pub fn finish(self, sink: Option<Sink>, deadline: std::time::Instant) {
        if self.unwritten.load(Ordering::Acquire) == 0 {
            // Nothing can send any more; the process exit ends the thread.
            std::mem::forget(sink);
            return;
        }
        drop(sink);
        let _ = self
            .finished
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }
}

impl Sink {
    /// Starts reading `pipe` (the read end of a service process's stream);
    /// the task ends at EOF, after writing out a last line without newline.
    pub fn read(&self, service: &str, stream: Stream, pipe: OwnedFd) -> io::Result<tokio::task::JoinHandle<()>> {
        let receiver = pipe::Receiver::from_owned_fd(pipe)?;
        let lines = LineSplitter::new(service, stream, self.style);
        Ok(tokio::spawn(read_pipe(receiver, lines, self.lines.clone())))
    }
}

/// The size of a read from a pipe.
const READ: usize = 8192;

thread_local! {
    /// One read buffer for every pipe: the readers run on the event loop's
    /// thread and never hold it across an await. A buffer per pipe would keep
    /// 16 kB per service resident for nothing (most services are quiet).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

async fn read_pipe(receiver: pipe::Receiver, mut lines: LineSplitter, out: Outbox) {
    loop {
        if receiver.readable().await.is_err() {
            break;
        }
        let read = READ_BUFFER.with_borrow_mut(|buf| {
            buf.resize(READ, 0);
            match receiver.try_read(buf) {
                Ok(0) => None, // EOF: the process (and anything it left) is gone
                Ok(n) => Some(lines.push(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(Vec::new()),
                Err(_) => None,
            }
        });
        let Some(read) = read else { break };
        for line in read {
            if !out.send(line).await {
                return;
            }
        }
    }
    if let Some(line) = lines.finish() {
        out.send(line).await;
    }
}

/// Bytes in, whole formatted lines out.
struct LineSplitter {
    service: String,
    stream: Stream,
    style: Style,
    partial: Vec<u8>,
    /// The line being built was split: its next piece says so.
    continued: bool,
}

impl LineSplitter {
    fn new(service: &str, stream: Stream, style: Style) -> Self {
        LineSplitter {
            service: service.to_owned(),
            stream,
            style,
            partial: Vec::new(),
            continued: false,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(&first) = bytes.first() {
            if self.partial.len() == MAX_LINE {
                // Full: a newline right after ends the line as it is;
                // anything else continues it on a new piece.
                if first == b'\n' {
                    out.push(self.emit(false));
                    bytes = &bytes[1..];
                } else {
                    out.push(self.emit(true));
                }
                continue;
            }
            let room = MAX_LINE - self.partial.len();
            match bytes.iter().take(room).position(|b| *b == b'\n') {
                Some(end) => {
                    self.partial.extend_from_slice(&bytes[..end]);
                    out.push(self.emit(false));
                    bytes = &bytes[end + 1..];
                }
                None => {
                    let take = room.min(bytes.len());
                    self.partial.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                }
            }
        }
        out
    }

    /// A last line with no newline, if any.
    fn finish(&mut self) -> Option<Line> {
        (!self.partial.is_empty()).then(|| self.emit(false))
    }

    fn emit(&mut self, split: bool) -> Line {
        let text = std::mem::take(&mut self.partial);
        let line = format_line(&self.service, self.stream, self.style, &text, self.continued, split);
        self.continued = split;
        Line {
            stream: self.stream,
            bytes: line,
        }
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'a str,
    service: &'a str,
    stream: Stream,
    message: String,
}

/// One output line, newline included.
fn format_line(service: &str, stream: Stream, style: Style, text: &[u8], continued: bool, split: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + service.len() + 48);
    match style.format {
        Format::Text => {
            if style.timestamps {
                out.extend_from_slice(
                    humantime::format_rfc3339_micros(SystemTime::now())
                        .to_string()
                        .as_bytes(),
                );
                out.push(b' ');
            }
            out.extend_from_slice(service.as_bytes());
            if stream == Stream::Stderr {
                out.extend_from_slice(b" (stderr)");
            }
            out.extend_from_slice(b" | ");
            if continued {
                out.extend_from_slice(b"[continued] ");
            }
            out.extend_from_slice(text);
            if split {
                out.extend_from_slice(CONTINUED.as_bytes());
            }
        }
        Format::Json => {
            let mut message = String::from_utf8_lossy(text).into_owned();
            if continued {
                message.insert_str(0, "[continued] ");
            }
            if split {
                message.push_str(CONTINUED);
            }
            let line = JsonLine {
                timestamp: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
                level: match stream {
                    Stream::Stdout => "info",
                    Stream::Stderr => "warn",
                },
                service,
                stream,
                message,
            };
            // Serializing strings and an enum cannot fail.
            if let Ok(json) = serde_json::to_vec(&line) {
                out = json;
            }
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Style = Style {
        format: Format::Text,
        timestamps: false,
    };

    fn texts(lines: Vec<Line>) -> Vec<String> {
        lines.into_iter().map(|l| String::from_utf8(l.bytes).unwrap()).collect()
    }

    #[test]
    fn whole_lines_come_out_whatever_the_chunks() {
        let mut s = LineSplitter::new("web", Stream::Stdout, TEXT);
        assert!(s.push(b"hel").is_empty());
        assert_eq!(texts(s.push(b"lo\nwor")), ["web | hello\n"]);
        assert_eq!(texts(s.push(b"ld\n\nlast")), ["web | world\n", "web | \n"]);
        assert_eq!(texts(s.finish().into_iter().collect()), ["web | last\n"]);
        assert!(s.finish().is_none());
    }

    #[test]
    fn stderr_is_marked() {
        let mut s = LineSplitter::new("db", Stream::Stderr, TEXT);
        assert_eq!(texts(s.push(b"oops\n")), ["db (stderr) | oops\n"]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_not_split() {
        let mut s = LineSplitter::new("w", Stream::Stdout, TEXT);
        let mut line = vec![b'x'; MAX_LINE];
        // The newline arrives in a chunk of its own: still one line.
        assert!(s.push(&line).is_empty());
        let out = texts(s.push(b"\n"));
        assert_eq!(out.len(), 1);
        assert!(!out[0].contains("[line continues]"));
        line.push(b'\n');
        assert_eq!(texts(s.push(&line)).len(), 1);
    }

    #[test]
    fn an_overlong_line_is_split_with_a_marker() {
        let mut s = LineSplitter::new("w", Stream::Stdout, TEXT);
        let mut long = vec![b'x'; MAX_LINE * 2 + 10];
        long.push(b'\n');
        let out = texts(s.push(&long));
        assert_eq!(out.len(), 3);
        assert!(out[0].ends_with(" [line continues]\n") && out[0].starts_with("w | xxx"));
        assert!(out[1].starts_with("w | [continued] xxx") && out[1].ends_with(" [line continues]\n"));
        assert_eq!(out[2], format!("w | [continued] {}\n", "x".repeat(10)));
        // Memory stays bounded: nothing is held after a split line ends.
        assert!(s.partial.is_empty());
    }

    proptest::proptest! {
        /// Whatever the bytes and however they are cut into reads, the
        /// lines written carry exactly the input: nothing lost, added or
        /// reordered (split lines joined back, the last line flushed).
        #[test]
        fn the_splitter_loses_and_adds_nothing(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40_000),
            cuts in proptest::collection::vec(1usize..5000, 1..20),
        ) {
            let mut s = LineSplitter::new("s", Stream::Stdout, TEXT);
            let mut out = Vec::new();
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                out.extend(s.push(chunk));
                rest = tail;
            }
            out.extend(s.finish());
            let mut rebuilt = Vec::new();
            for line in &out {
                let mut text = line.bytes.strip_prefix(b"s | ".as_slice()).unwrap().to_vec();
                proptest::prop_assert_eq!(text.pop(), Some(b'\n'));
                let continued = text.starts_with(b"[continued] ");
                if continued {
                    text.drain(..b"[continued] ".len());
                }
                let split = text.ends_with(CONTINUED.as_bytes());
                if split {
                    text.truncate(text.len() - CONTINUED.len());
                }
                proptest::prop_assert!(text.len() <= MAX_LINE);
                rebuilt.extend_from_slice(&text);
                if !split {
                    rebuilt.push(b'\n');
                }
            }
            // The last line had no newline of its own unless the input ended with one.
            if !input.ends_with(b"\n") && !input.is_empty() {
                rebuilt.pop();
            }
            proptest::prop_assert_eq!(rebuilt, input);
        }
    }

    #[test]
    fn json_lines_parse_back() {
        let style = Style {
            format: Format::Json,
            timestamps: false,
        };
        let mut s = LineSplitter::new("web", Stream::Stderr, style);
        let out = texts(s.push(b"said \"hi\" \xff\n"));
        let v: serde_json::Value = serde_json::from_str(out[0].trim_end()).unwrap();
        assert_eq!(v["service"], "web");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["message"], "said \"hi\" \u{fffd}");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn timestamps_come_first() {
        let style = Style {
            format: Format::Text,
            timestamps: true,
        };
        let mut s = LineSplitter::new("web", Stream::Stdout, style);
        let out = texts(s.push(b"x\n"));
        assert!(out[0].ends_with("Z web | x\n"), "{}", out[0]);
    }
}
