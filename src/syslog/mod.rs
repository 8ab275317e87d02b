//! `/dev/log` in PID 1 (`--syslog`): the socket, and the relay of what
//! programs log there to baseinit's output, one line per message.
//!
//! Daemons that only speak syslog (cron, sshd, postfix) write datagrams to
//! `/dev/log`; without a syslog daemon in the container their lines are
//! lost. baseinit binds the socket once the first services have started
//! (as the control socket), and a task on the event loop's thread reads
//! every datagram there, reads its header ([`parse`]) and formats it as a
//! line like a service's (`syslog:TAG | text`, or JSON with the facility,
//! severity, tag and pid) for the output writer ([`crate::output`]).
//!
//! The relay never makes senders wait on baseinit's stdout: it reads all
//! the socket holds, formats into a bounded pending buffer ([`PENDING`])
//! and hands it to the writer in batches, waiting for room in the writer's
//! channel while it goes on reading. When stdout is too slow and the
//! buffer is full, a message is dropped and counted, and baseinit's log
//! says how many at most once a second; `baseinit status` shows the totals.
//! (Service lines are held back instead, which slows the service down: a
//! syslog sender is not ours to slow, and a blocked `/dev/log` stalls every
//! daemon that logs.) Nothing is kept while idle: the pending buffer goes
//! to the writer, and the read buffer lives for one wake-up.
//!
//! With `--syslog-dir`, each message also goes to an svlogd log directory,
//! as a `[log]` section's lines do (the output writer appends them, through
//! `crate::logdir`): `FACILITY.SEVERITY TAG[PID]: text`, stamped by the
//! directory.

mod parse;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UnixDatagram;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::config::LogFiles;
use crate::output::{Format, Sink, Stream, Style, escape_json};
use crate::status::SyslogStatus;

pub use parse::{MAX_TAG, Message, facility_name, level, parse, severity_name};

/// The longest datagram relayed whole; a longer one is cut, with
/// [`CUT`]. (A Unix datagram can be larger, up to the sender's socket
/// buffer.) The read buffer is one byte larger, to tell.
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Appended to the text of a datagram longer than [`MAX_DATAGRAM`].
pub const CUT: &str = " [message cut at 64 KiB]";
/// The most formatted bytes the relay holds for the writer; past it, a
/// message is dropped.
pub const PENDING: usize = 256 * 1024;
/// A batch handed to the writer is cut after the line that reaches this.
const CHUNK: usize = 64 * 1024;
/// Datagrams read in one go before the event loop gets a turn: under a
/// flood, `status` and signals are still answered between bursts.
const BURST: usize = 256;
/// At most one line about drops this often, while dropping.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What `--syslog` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The socket (`--syslog-socket`, `/dev/log`).
    pub socket: PathBuf,
    /// `--syslog-dir`: the messages kept in this log directory too.
    pub dir: Option<LogFiles>,
}

/// The relay's counts since boot, read by `baseinit status`.
///
/// Atomics, though the relay and the supervisor run on the one thread of
/// the current-thread runtime: `tokio::spawn` takes only `Send` tasks
/// (there is no `LocalSet`), so an `Rc<Cell<u64>>` cannot be shared with
/// one. Relaxed atomics on x86 and arm cost what a plain add does.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams read from the socket.
    received: AtomicU64,
    /// Of these, dropped for a slow output.
    dropped: AtomicU64,
}

/// The running relay (or why there is none), for the supervisor.
pub struct Relay {
    socket: PathBuf,
    stats: Arc<Stats>,
    running: Option<Running>,
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    stop: oneshot::Sender<()>,
    /// The socket file's device and inode: at exit it is removed only if
    /// it is still ours (a syslog daemon started later may have replaced it).
    file: Option<(u64, u64)>,
}

/// Binds the socket and starts relaying to `sink`. Never fails the boot:
/// when the socket cannot be had, one line in the log says why, and the
/// relay's status says it is not listening.
pub fn start(settings: &Settings, sink: Option<&Sink>, style: Style) -> Relay {
    let socket = settings.socket.clone();
    let stats = Arc::new(Stats::default());
    let mut relay = Relay {
        socket: socket.clone(),
        stats: stats.clone(),
        running: None,
    };
    let Some(sink) = sink else {
        warn!(
            "syslog: no output writer, so nothing is relayed from {}",
            socket.display()
        );
        return relay;
    };
    let bound = match bind(&socket) {
        Ok(bound) => bound,
        Err(Refused::Quiet(message)) => {
            info!("{message}");
            return relay;
        }
        Err(Refused::Loud(message)) => {
            warn!("{message}");
            return relay;
        }
    };
    let socket_fd = match bound.set_nonblocking(true).and_then(|()| UnixDatagram::from_std(bound)) {
        Ok(socket_fd) => socket_fd,
        Err(e) => {
            warn!("syslog: cannot watch {}: {e}; nothing is relayed", socket.display());
            let _ = std::fs::remove_file(&socket);
            return relay;
        }
    };
    let (stop, stopped) = oneshot::channel();
    let file = identity(&socket);
    tracing::debug!("syslog: relaying {}", socket.display());
    let task = Task {
        path: socket,
        socket: socket_fd,
        out: sink.clone(),
        dir: settings.dir.clone().map(Arc::new),
        style,
        stats,
        pending: Pending::default(),
        drops: Drops::default(),
    };
    relay.running = Some(Running {
        task: tokio::spawn(task.run(stopped)),
        stop,
        file,
    });
    relay
}

impl Relay {
    /// What `baseinit status` shows.
    pub fn status(&self) -> SyslogStatus {
        SyslogStatus {
            socket: self.socket.display().to_string(),
            // Still reading, at a path still ours (a syslog daemon started
            // as a service may have replaced the file with its own socket).
            listening: self
                .running
                .as_ref()
                .is_some_and(|r| !r.task.is_finished() && r.file.is_some() && identity(&self.socket) == r.file),
            received: self.stats.received.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
        }
    }

    /// At exit, once the services are gone: relays what the socket still
    /// holds, hands the writer everything pending, and removes the socket.
    /// Bounded by `deadline` (a stdout nobody reads).
    pub async fn finish(self, deadline: Instant) {
        let Some(running) = self.running else {
            return;
        };
        let _ = running.stop.send(());
        let abort = running.task.abort_handle();
        if tokio::time::timeout_at(deadline.into(), running.task).await.is_err() {
            abort.abort();
        }
        if running.file.is_some() && identity(&self.socket) == running.file {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// The device and inode of the file at `path` (not following a link).
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Why there is no socket: `Quiet` where that is expected (a `/dev` this
/// user may not write, in a non-root container), `Loud` otherwise.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Quiet(String),
    Loud(String),
}

/// Binds `path` (mode 0666: every user may log, as with `/dev/log`
/// normally). A stale socket there (nobody answers) is replaced; a live one
/// (another syslog daemon, or the host's `/dev/log` mounted in) and
/// anything that is not a socket are left alone.
fn bind(path: &Path) -> Result<std::os::unix::net::UnixDatagram, Refused> {
    use std::os::unix::net::UnixDatagram;
    let shown = path.display();
    let not_relayed = "syslog messages are not relayed";
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixDatagram::unbound().and_then(|s| s.connect(path)) {
            Ok(()) => {
                return Err(Refused::Loud(format!(
                    "syslog: {shown} is another program's live socket (a syslog daemon?): left alone; {not_relayed} by baseinit"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Nobody listens: a socket left by a process gone.
                if let Err(e) = std::fs::remove_file(path) {
                    return Err(Refused::Loud(format!(
                        "syslog: cannot remove the stale socket {shown}: {e}; {not_relayed}"
                    )));
                }
            }
            Err(e) => {
                return Err(Refused::Loud(format!(
                    "syslog: {shown} is a socket that does not take datagrams ({e}): left alone; {not_relayed}"
                )));
            }
        },
        Ok(meta) => {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a socket"
            };
            return Err(Refused::Loud(format!(
                "syslog: {shown} exists and is {what}: left alone; {not_relayed}"
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Refused::Loud(format!(
                "syslog: cannot look at {shown}: {e}; {not_relayed}"
            )));
        }
    }
    let socket = UnixDatagram::bind(path).map_err(|e| {
        let message =
            format!("syslog: cannot create {shown}: {e}; {not_relayed} (--syslog-socket names another place)");
        match e.raw_os_error() {
            // A read-only or root-owned /dev, in a container of another user.
            Some(nix::libc::EACCES | nix::libc::EPERM | nix::libc::EROFS) => Refused::Quiet(message),
            _ => Refused::Loud(message),
        }
    })?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)) {
        warn!("syslog: cannot make {shown} writable by every user: {e}; only baseinit's own user can log");
    }
    Ok(socket)
}

/// The relay task.
struct Task {
    path: PathBuf,
    socket: UnixDatagram,
    /// Where lines go.
    out: Sink,
    /// `--syslog-dir`.
    dir: Option<Arc<LogFiles>>,
    style: Style,
    stats: Arc<Stats>,
    pending: Pending,
    drops: Drops,
}

/// A batch on its way into the writer's channel.
type Sending = Pin<Box<dyn Future<Output = bool> + Send>>;

/// What a burst of reads ended with.
#[derive(Debug, PartialEq, Eq)]
enum Burst {
    /// The socket is empty.
    Drained,
    /// [`BURST`] datagrams read; there may be more.
    More,
    /// The socket failed; the relay ends.
    Failed,
}

impl Task {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut sending: Option<Sending> = None;
        loop {
            if sending.is_none() {
                sending = self.next_batch();
            }
            let report_at = self.drops.due;
            tokio::select! {
                biased;
                _ = &mut stop => break,
                sent = async {
                    match sending.as_mut() {
                        Some(batch) => batch.await,
                        None => std::future::pending().await,
                    }
                }, if sending.is_some() => {
                    sending = None;
                    self.pending.sending = 0;
                    if !sent {
                        // The writer is gone (a bug, or the very end): nothing can be written.
                        return;
                    }
                }
                () = sleep_until(report_at), if report_at.is_some() => self.drops.report(Instant::now()),
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        warn!("syslog: {} failed: {e}; syslog messages are no longer relayed", self.path.display());
                        break;
                    }
                    match self.read_burst() {
                        Burst::Drained => {}
                        // Others get a turn; the socket is read again right after.
                        Burst::More => tokio::task::yield_now().await,
                        Burst::Failed => break,
                    }
                    self.drops.report_if_due(Instant::now());
                }
            }
        }
        // The end: what the socket still holds (a few bursts at most: a
        // sender left running must not keep baseinit from exiting), then
        // everything pending, in order.
        for _ in 0..16 {
            if self.read_burst() != Burst::More {
                break;
            }
        }
        self.drops.report(Instant::now());
        if let Some(batch) = sending.take()
            && !batch.await
        {
            return;
        }
        while let Some(batch) = self.next_batch() {
            if !batch.await {
                return;
            }
        }
    }

    /// The next pending batch, on its way to the writer.
    fn next_batch(&mut self) -> Option<Sending> {
        let chunk = self.pending.chunks.pop_front()?;
        if self.pending.chunks.is_empty() {
            // Nothing kept while idle.
            self.pending.chunks = VecDeque::new();
        }
        let size = chunk.lines.len() + chunk.file.len();
        self.pending.held -= size;
        self.pending.sending = size;
        let file = self.dir.clone().map(|dir| (dir, chunk.file));
        Some(Box::pin(self.out.send_lines(Stream::Stdout, chunk.lines, file)))
    }

    /// Reads what the socket holds, [`BURST`] datagrams at most, and formats
    /// each into the pending buffer (or drops it when that is full).
    fn read_burst(&mut self) -> Burst {
        // For this burst only: a quiet socket keeps no 64 KiB resident (and
        // reading into spare capacity touches only the pages a datagram fills).
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_DATAGRAM + 1);
        let stamp = stamp(self.style);
        let now = Instant::now();
        for _ in 0..BURST {
            buf.clear();
            match self.socket.try_recv_buf(&mut buf) {
                Ok(n) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    let cut = n > MAX_DATAGRAM;
                    self.relay(&buf[..n.min(MAX_DATAGRAM)], cut, &stamp, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Burst::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(
                        "syslog: cannot read {}: {e}; syslog messages are no longer relayed",
                        self.path.display()
                    );
                    return Burst::Failed;
                }
            }
        }
        Burst::More
    }

    /// One datagram into the pending buffer, or dropped when it is full.
    fn relay(&mut self, datagram: &[u8], cut: bool, stamp: &str, now: Instant) {
        if self.pending.held + self.pending.sending >= PENDING {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.drops.dropped(now);
            return;
        }
        let message = parse(datagram);
        let busy = self.pending.sending > 0;
        let style = self.style;
        let to_dir = self.dir.is_some();
        self.pending.append(busy, datagram.len(), |chunk| {
            format(&mut chunk.lines, style, stamp, &message, cut);
            if to_dir {
                format_for_dir(&mut chunk.file, &message, cut);
            }
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Formatted lines not yet handed to the writer.
#[derive(Default)]
struct Pending {
    /// Batches of whole lines, each cut after the line that reaches [`CHUNK`].
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks`.
    held: usize,
    /// Bytes of the batch on its way into the writer's channel.
    sending: usize,
}

/// One batch: the lines for the output, and (`--syslog-dir`) for the
/// directory.
#[derive(Default)]
struct Chunk {
    lines: Vec<u8>,
    file: Vec<u8>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.lines.len() + self.file.len()
    }
}

impl Pending {
    /// Appends a line (`write` writes it) to the last batch, or to a new
    /// one: sized for a flood when a batch is already waiting for the
    /// writer (`busy`), else for about the one line of `size` bytes.
    fn append(&mut self, busy: bool, size: usize, write: impl FnOnce(&mut Chunk)) {
        if self.chunks.back().is_none_or(|c| c.lines.len() >= CHUNK) {
            let room = if busy {
                CHUNK + 8 * 1024
            } else {
                (2 * size + 256).min(CHUNK)
            };
            self.chunks.push_back(Chunk {
                lines: Vec::with_capacity(room),
                file: Vec::new(),
            });
        }
        if let Some(chunk) = self.chunks.back_mut() {
            let before = chunk.len();
            write(chunk);
            self.held += chunk.len() - before;
        }
    }
}

/// Drops not yet reported, and when the next report is due.
#[derive(Default)]
struct Drops {
    unreported: u64,
    last_report: Option<Instant>,
    due: Option<Instant>,
}

impl Drops {
    fn dropped(&mut self, now: Instant) {
        self.unreported += 1;
        if self.due.is_none() {
            self.due = Some(self.last_report.map_or(now, |last| (last + REPORT_EVERY).max(now)));
        }
    }

    fn report_if_due(&mut self, now: Instant) {
        if self.due.is_some_and(|due| due <= now) {
            self.report(now);
        }
    }

    fn report(&mut self, now: Instant) {
        if self.unreported > 0 {
            let n = self.unreported;
            warn!(
                "syslog: {n} message{} dropped (output too slow)",
                if n == 1 { "" } else { "s" }
            );
            self.unreported = 0;
            self.last_report = Some(now);
        }
        self.due = None;
    }
}

/// The time of a burst, as service lines show it; empty when the style
/// shows none.
fn stamp(style: Style) -> String {
    if style.format == Format::Json || style.timestamps {
        humantime::format_rfc3339_micros(SystemTime::now()).to_string()
    } else {
        String::new()
    }
}

/// One message as one line, with its newline: `[STAMP ]syslog:TAG | text`
/// (`syslog | text` without a tag), or a JSON object with the fields of a
/// service line and the message's own.
fn format(out: &mut Vec<u8>, style: Style, stamp: &str, message: &Message, cut: bool) {
    match style.format {
        Format::Text => {
            if style.timestamps {
                out.extend_from_slice(stamp.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(b"syslog");
            if let Some(tag) = message.tag {
                out.push(b':');
                out.extend_from_slice(tag);
            }
            out.extend_from_slice(b" | ");
            out.extend_from_slice(&message.text);
            if cut {
                out.extend_from_slice(CUT.as_bytes());
            }
        }
        Format::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            out.extend_from_slice(stamp.as_bytes());
            out.extend_from_slice(b"\",\"level\":\"");
            out.extend_from_slice(level(message.severity).as_bytes());
            out.extend_from_slice(b"\",\"service\":\"syslog");
            if let Some(tag) = message.tag {
                out.push(b':');
                escape_json(out, tag);
            }
            out.extend_from_slice(b"\",\"stream\":\"stdout\",\"message\":\"");
            escape_json(out, &message.text);
            if cut {
                out.extend_from_slice(CUT.as_bytes());
            }
            out.extend_from_slice(b"\",\"facility\":\"");
            out.extend_from_slice(facility_name(message.facility).as_bytes());
            out.extend_from_slice(b"\",\"severity\":\"");
            out.extend_from_slice(severity_name(message.severity).as_bytes());
            out.extend_from_slice(b"\",\"tag\":");
            match message.tag {
                Some(tag) => {
                    out.push(b'"');
                    escape_json(out, tag);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"pid\":");
            match message.pid {
                Some(pid) => out.extend_from_slice(pid.to_string().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
        }
    }
    out.push(b'\n');
}

/// One message as a line of the `--syslog-dir` directory, which stamps it:
/// `FACILITY.SEVERITY TAG[PID]: text`, as syslog daemons write files.
fn format_for_dir(out: &mut Vec<u8>, message: &Message, cut: bool) {
    out.extend_from_slice(facility_name(message.facility).as_bytes());
    out.push(b'.');
    out.extend_from_slice(severity_name(message.severity).as_bytes());
    out.push(b' ');
    if let Some(tag) = message.tag {
        out.extend_from_slice(tag);
        if let Some(pid) = message.pid {
            out.extend_from_slice(format!("[{pid}]").as_bytes());
        }
        out.extend_from_slice(b": ");
    }
    out.extend_from_slice(&message.text);
    if cut {
        out.extend_from_slice(CUT.as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Style = Style {
        format: Format::Text,
        timestamps: false,
    };
    const JSON: Style = Style {
        format: Format::Json,
        timestamps: false,
    };

    fn line(style: Style, datagram: &[u8], cut: bool) -> String {
        let mut out = Vec::new();
        format(&mut out, style, &stamp(style), &parse(datagram), cut);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn text_lines_look_like_service_lines() {
        assert_eq!(
            line(TEXT, b"<13>Dec  6 10:07:38 mytag: hello", false),
            "syslog:mytag | hello\n"
        );
        assert_eq!(line(TEXT, b"no header", false), "syslog | no header\n");
        assert_eq!(line(TEXT, b"<13>t: a\nb\n", false), "syslog:t | a\\nb\n");
        assert_eq!(line(TEXT, b"<13>t: long", true), format!("syslog:t | long{CUT}\n"));
        let stamped = Style {
            format: Format::Text,
            timestamps: true,
        };
        let text = line(stamped, b"<13>t: x", false);
        assert!(
            text.ends_with("Z syslog:t | x\n") && text.len() == "2026-12-06T10:07:38.873872Z syslog:t | x\n".len(),
            "{text}"
        );
    }

    #[test]
    fn json_lines_carry_the_messages_fields() {
        let text = line(JSON, b"<155>Dec  6 10:07:38 my\"tag[42]: caf\xe9 \"q\"", false);
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["service"], "syslog:my\"tag");
        assert_eq!(v["stream"], "stdout");
        assert_eq!(v["level"], "error");
        assert_eq!(v["message"], "caf\u{fffd} \"q\"");
        assert_eq!(v["facility"], "local3");
        assert_eq!(v["severity"], "err");
        assert_eq!(v["tag"], "my\"tag");
        assert_eq!(v["pid"], 42);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        // The fields of a service line first, in their order, then the message's.
        let keys = [
            "timestamp",
            "level",
            "service",
            "stream",
            "message",
            "facility",
            "severity",
            "tag",
            "pid",
        ];
        let at: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(at.is_sorted(), "{text}");
        let v: serde_json::Value = serde_json::from_str(&line(JSON, b"bare", true)).unwrap();
        assert_eq!(v["service"], "syslog");
        assert_eq!(v["tag"], serde_json::Value::Null);
        assert_eq!(v["pid"], serde_json::Value::Null);
        assert_eq!(v["facility"], "user");
        assert_eq!(v["severity"], "notice");
        assert_eq!(v["message"], format!("bare{CUT}"));
    }

    #[test]
    fn pending_batches_are_cut_after_the_line_that_fills_them() {
        let mut pending = Pending::default();
        let line = vec![b'x'; 1000];
        for _ in 0..200 {
            pending.append(false, line.len(), |out| out.lines.extend_from_slice(&line));
        }
        assert_eq!(pending.held, 200_000);
        assert!(pending.chunks.len() >= 3);
        for chunk in &pending.chunks {
            assert!(chunk.len() <= CHUNK + line.len(), "{}", chunk.len());
        }
        assert_eq!(pending.chunks.iter().map(Chunk::len).sum::<usize>(), pending.held);
    }

    #[test]
    fn directory_lines_carry_facility_severity_tag_and_pid() {
        let mut out = Vec::new();
        format_for_dir(
            &mut out,
            &parse(b"<78>Dec  6 10:07:38 CRON[42]: (root) CMD (date)"),
            false,
        );
        format_for_dir(&mut out, &parse(b"no header"), false);
        format_for_dir(&mut out, &parse(b"<13>t: long"), true);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("cron.info CRON[42]: (root) CMD (date)\nuser.notice no header\nuser.notice t: long{CUT}\n")
        );
    }

    #[test]
    fn drops_are_reported_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut drops = Drops::default();
        drops.dropped(t0);
        assert_eq!(drops.due, Some(t0), "the first at once");
        drops.report_if_due(t0);
        assert_eq!((drops.unreported, drops.last_report), (0, Some(t0)));
        drops.dropped(t0 + Duration::from_millis(100));
        drops.dropped(t0 + Duration::from_millis(200));
        assert_eq!(drops.due, Some(t0 + REPORT_EVERY), "the next a second after the last");
        drops.report_if_due(t0 + Duration::from_millis(300));
        assert_eq!(drops.unreported, 2, "not yet");
        drops.report_if_due(t0 + REPORT_EVERY);
        assert_eq!((drops.unreported, drops.due), (0, None));
        // Quiet for a while: the next drop is reported at once again.
        drops.dropped(t0 + Duration::from_secs(5));
        assert_eq!(drops.due, Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn a_missing_path_is_bound_for_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let socket = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.send_to(b"<13>t: hi", &path).unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<13>t: hi");
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // Live: another daemon's.
        let other = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        match bind(&path) {
            Err(Refused::Loud(message)) => assert!(message.contains("live socket"), "{message}"),
            other => panic!("{other:?}"),
        }
        // Stale: its owner is gone.
        drop(other);
        assert!(bind(&path).is_ok());
        // A stream socket listening there: left alone too.
        let stream = dir.path().join("stream");
        let _listener = std::os::unix::net::UnixListener::bind(&stream).unwrap();
        match bind(&stream) {
            Err(Refused::Loud(message)) => assert!(message.contains("does not take datagrams"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn anything_else_at_the_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "keep me").unwrap();
        match bind(&file) {
            Err(Refused::Loud(message)) => assert!(message.contains("not a socket"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        // A directory nobody may create in (sysfs: EPERM, or EROFS where it
        // is mounted read-only, as in containers): expected, so quiet.
        if Path::new("/sys/kernel").is_dir() {
            match bind(Path::new("/sys/baseinit-test-log")) {
                Err(Refused::Quiet(message)) => assert!(message.contains("cannot create"), "{message}"),
                other => panic!("{other:?}"),
            }
        }
        let missing_dir = dir.path().join("no/such/dir/log");
        match bind(&missing_dir) {
            Err(Refused::Loud(message)) => assert!(message.contains("cannot create"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
