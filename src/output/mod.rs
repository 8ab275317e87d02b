//! Services' stdout and stderr: read from pipes, cut into whole lines,
//! prefixed with the service's name (or made JSON), and written to baseinit's
//! own stdout and stderr by one writer, at the rate of a pipe.
//!
//! Each process baseinit starts for a service (`run`, `finish`, a `control/`
//! script) gets fresh pipes for its stdout and stderr; baseinit keeps no
//! write end, so a pipe's EOF is exactly the end of that process (and of
//! what it left behind holding the pipe). A reader task per pipe reads what
//! is there, formats the whole lines into one batch ([`lines`]: at most
//! [`MAX_LINE`] bytes held of a line; a longer one is split with a visible
//! marker) and sends the batch over a bounded channel to a single writer
//! thread, which owns baseinit's stdout and stderr: the cost is per read,
//! not per line. One writer, writing whole lines, means lines from different
//! services never tear into each other; when baseinit's stdout is a pipe
//! other processes write to as well (the main command, `inherit` services),
//! it writes at most `PIPE_BUF` bytes at a time, cut between lines, so that
//! their lines cannot land inside one of its lines either.
//!
//! When baseinit's stdout is slow, the writer blocks, the channel fills, the
//! readers stop reading and the services block on their own writes:
//! back-pressure, no dropped line, bounded memory, and the supervisor task
//! never waits on any of it. The channel serves waiting readers in turn, one
//! batch each, so a flooding service cannot starve another's lines. A lone
//! line is written as soon as it is read: nothing waits for a batch to fill.

mod files;
mod lines;
mod watch;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use memchr::{memchr, memrchr};

use crate::config::LogFiles;
use nix::errno::Errno;
use serde::Serialize;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use files::{FileBatch, LogDirs};
pub use lines::{CONTINUED, MAX_LINE, escape_json};
use lines::{LineSplitter, Stamp};
pub use watch::LineWatch;
use watch::Watches;

/// Batches in flight between the readers and the writer.
const CHANNEL: usize = 4;
/// A read from a pipe.
const READ: usize = 32 * 1024;
/// A batch is sent once it holds this much: room for a read of ordinary
/// lines prefixed, or made JSON (about twice as long). What a read brought
/// beyond it waits for the next batch (a read of very short lines grows
/// many times over).
const BATCH: usize = 3 * READ;
/// Room past `BATCH` for the line that crosses it, so that a batch's
/// buffer is allocated once (a line with many bytes to escape may still
/// grow it).
const HEADROOM: usize = MAX_LINE + 1024;
/// Empty batch buffers kept for reuse while output flows in batches of a
/// page or more; the first smaller batch (a lone line) lets them go. A
/// reader waiting to send gets its turn when the writer is done with a
/// batch, whose buffer it then takes: two are enough.
const SPARE: usize = 2;
/// The most bytes a write to a pipe puts in it at once, never interleaved
/// with another process's write (POSIX: at least 512; Linux: 4096).
const PIPE_BUF: usize = 4096;

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

/// Whole formatted lines of one stream, ready to write, and the same lines
/// for the service's log directory, if it has one.
struct Batch {
    stream: Stream,
    bytes: Vec<u8>,
    file: Option<FileBatch>,
}

/// The writer thread's end: readers are made from it.
#[derive(Clone)]
pub struct Sink {
    batches: Outbox,
    style: Style,
    /// Some process other than baseinit may hold its stdout.
    shared: Arc<AtomicBool>,
}

/// Where readers send batches, counting those not yet written, and the
/// spare buffers the writer hands back.
#[derive(Clone)]
struct Outbox {
    batches: mpsc::Sender<Batch>,
    /// Batches sent and not yet written out by the thread.
    unwritten: Arc<AtomicUsize>,
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Outbox {
    /// False when the writer thread is gone.
    async fn send(&self, batch: Batch) -> bool {
        self.unwritten.fetch_add(1, Ordering::Relaxed);
        let sent = self.batches.send(batch).await.is_ok();
        if !sent {
            self.unwritten.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// An empty buffer for a batch made of `input` bytes: a spare one
    /// during a flood, else one of about the size it will need.
    fn buffer(&self, input: usize) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| Vec::with_capacity((input.saturating_mul(3) + 1024).min(BATCH + HEADROOM)))
    }

    /// A buffer that was not sent goes back to the spares.
    fn keep(&self, buffer: Vec<u8>) {
        keep_spare(&self.spare, buffer);
    }
}

fn keep_spare(spare: &Mutex<Vec<Vec<u8>>>, mut buffer: Vec<u8>) {
    let mut spare = spare.lock().unwrap_or_else(PoisonError::into_inner);
    if spare.len() < SPARE && buffer.capacity() > 0 {
        buffer.clear();
        spare.push(buffer);
    }
}

/// Starts the writer thread; `finish` waits for it.
pub fn start(style: Style) -> io::Result<(Sink, Writer)> {
    let (batches, mut received) = mpsc::channel::<Batch>(CHANNEL);
    let (done, finished) = std::sync::mpsc::channel();
    let unwritten = Arc::new(AtomicUsize::new(0));
    let written = unwritten.clone();
    let spare = Arc::new(Mutex::new(Vec::with_capacity(SPARE)));
    let returned = spare.clone();
    let files_open = Arc::new(AtomicBool::new(false));
    let any_open = files_open.clone();
    let shared = Arc::new(AtomicBool::new(false));
    let stdout_shared = shared.clone();
    std::thread::Builder::new().name("output".into()).spawn(move || {
        let (stdout, stderr) = (io::stdout(), io::stderr());
        let (out, err) = (
            Target::new(stdout.as_fd(), Some(stdout_shared)),
            Target::new(stderr.as_fd(), None),
        );
        let mut dirs = LogDirs::default();
        while let Some(batch) = received.blocking_recv() {
            // A closed or failing stdout loses lines, never PID 1.
            let _ = match batch.stream {
                Stream::Stdout => out.write_lines(&batch.bytes),
                Stream::Stderr => err.write_lines(&batch.bytes),
            };
            if let Some(file) = &batch.file {
                dirs.write(file);
                any_open.store(dirs.any_open(), Ordering::Release);
            }
            written.fetch_sub(1, Ordering::Release);
            if batch.bytes.len() >= PIPE_BUF {
                // A flood: the buffer is reused for the next batch (freeing
                // and allocating them costs a flood more than the copying).
                keep_spare(&returned, batch.bytes);
            } else {
                // Lines as they come, or the flood's last batch: nothing is
                // kept for a flood that is over.
                returned.lock().unwrap_or_else(PoisonError::into_inner).clear();
            }
        }
        dirs.close_all();
        let _ = done.send(());
    })?;
    let outbox = Outbox {
        batches,
        unwritten: unwritten.clone(),
        spare,
    };
    Ok((
        Sink {
            batches: outbox,
            style,
            shared,
        },
        Writer {
            finished,
            unwritten,
            files_open,
        },
    ))
}

/// One of baseinit's own streams, as the writer writes to it.
struct Target<'a> {
    fd: BorrowedFd<'a>,
    /// A pipe (or FIFO): others may write to it too, so whole lines go in
    /// writes of at most `PIPE_BUF`, once `shared` says another process may.
    pipe: bool,
    /// Another process may hold this stream (see [`Sink::share_stdout`]);
    /// None: always assumed (stderr, where baseinit's own log writes too).
    shared: Option<Arc<AtomicBool>>,
}

impl<'a> Target<'a> {
    fn new(fd: BorrowedFd<'a>, shared: Option<Arc<AtomicBool>>) -> Self {
        let pipe = nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO);
        Target { fd, pipe, shared }
    }

    /// Writes `bytes` (whole lines), in pieces cut between lines when the
    /// target is a pipe.
    fn write_lines(&self, bytes: &[u8]) -> Result<(), Errno> {
        let mut rest = bytes;
        let pieces = self.pipe && self.shared.as_ref().is_none_or(|shared| shared.load(Ordering::Acquire));
        while !rest.is_empty() {
            let end = if pieces { piece(rest) } else { rest.len() };
            write_all(self.fd, &rest[..end])?;
            rest = &rest[end..];
        }
        Ok(())
    }
}

/// The length of the first piece of `lines`: as many whole lines as fit in
/// `PIPE_BUF`, or one longer line alone.
fn piece(lines: &[u8]) -> usize {
    if lines.len() <= PIPE_BUF {
        return lines.len();
    }
    match memrchr(b'\n', &lines[..PIPE_BUF]) {
        Some(newline) => newline + 1,
        None => memchr(b'\n', &lines[PIPE_BUF..]).map_or(lines.len(), |n| PIPE_BUF + n + 1),
    }
}

/// Writes all of `bytes`, waiting for room if the descriptor is
/// non-blocking.
fn write_all(fd: BorrowedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                match nix::poll::poll(&mut poll, nix::poll::PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The writer thread, to wait for at exit.
pub struct Writer {
    finished: std::sync::mpsc::Receiver<()>,
    unwritten: Arc<AtomicUsize>,
    /// Log directories are open: the thread must close them at the end.
    files_open: Arc<AtomicBool>,
}

impl Writer {
    /// Waits until every batch sent has been written, or until `deadline` (a
    /// stdout nobody reads must not keep PID 1 from exiting). `sink` is the
    /// last sender (the readers' are gone). When everything is written
    /// already, it returns at once and leaves the idle thread asleep, to
    /// end with the process: closing the channel would wake it only to hear
    /// it end, and a thread that ends frees its stack, on the CPU the last
    /// log line then waits for, which lengthens the stop on a busy machine.
    pub fn finish(self, sink: Option<Sink>, deadline: std::time::Instant) {
        if self.unwritten.load(Ordering::Acquire) == 0 && !self.files_open.load(Ordering::Acquire) {
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
    /// Some process (the main command, a startup script, an `inherit`
    /// service) was given baseinit's stdout: from now on, writes to a pipe
    /// are cut to `PIPE_BUF` between lines so that its lines cannot land
    /// inside one of baseinit's. Until then baseinit is the pipe's only
    /// writer and writes a batch at once, a fraction of the system calls
    /// (and of the reader's wake-ups). For good: the process may leave
    /// children holding the pipe behind.
    pub fn share_stdout(&self) {
        if !self.shared.swap(true, Ordering::AcqRel) {
            tracing::debug!("stdout is shared with a child: writes of whole lines up to PIPE_BUF from now on");
        }
    }

    /// Starts reading `pipe` (the read end of a service process's stream);
    /// the task ends at EOF, after writing out a last line without newline.
    ///
    /// With `files` (a `[log]` section), the lines go to that directory too,
    /// or only there when it says `stdout = false`. `watches` (`log-line`)
    /// test each line, until each is done (none: nothing is tested).
    pub fn read(
        &self,
        service: &str,
        stream: Stream,
        pipe: OwnedFd,
        files: Option<Arc<LogFiles>>,
        watches: Vec<LineWatch>,
    ) -> io::Result<tokio::task::JoinHandle<()>> {
        let receiver = pipe::Receiver::from_owned_fd(pipe)?;
        let to_stdout = files.as_ref().is_none_or(|f| f.stdout);
        let reader = Reader {
            stream,
            style: self.style,
            lines: if to_stdout {
                LineSplitter::new(service, stream, self.style)
            } else {
                LineSplitter::bare()
            },
            files: files.map(|files| FileLines {
                splitter: to_stdout.then(LineSplitter::bare),
                files,
            }),
            unformatted: Vec::new(),
            out: self.batches.clone(),
            watches: Watches::new(watches),
        };
        Ok(tokio::spawn(reader.run(receiver)))
    }

    /// Hands `lines` (whole formatted lines) to the writer, waiting for room
    /// in turn with the readers; false when the writer is gone. The future
    /// owns all it needs, so a task can hold it while it does other work:
    /// the syslog relay reads its socket meanwhile.
    pub fn send_lines(
        &self,
        stream: Stream,
        lines: Vec<u8>,
        file: Option<(Arc<LogFiles>, Vec<u8>)>,
    ) -> impl Future<Output = bool> + Send + 'static {
        let out = self.batches.clone();
        async move {
            let batch = Batch {
                stream,
                bytes: lines,
                file: file.map(|(files, lines)| FileBatch { files, lines }),
            };
            out.send(batch).await
        }
    }
}

thread_local! {
    /// One read buffer for every pipe: the readers run on the event loop's
    /// thread and never hold it across an await. A buffer per pipe would keep
    /// memory per service resident for nothing (most services are quiet).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One pipe's reader task.
struct Reader {
    stream: Stream,
    style: Style,
    /// Formats for baseinit's output, or (`stdout = false`) for the log
    /// directory only.
    lines: LineSplitter,
    files: Option<FileLines>,
    /// Bytes read that did not fit in the last batch (a read of short lines
    /// grows past [`BATCH`] once formatted): the next batch starts with them.
    unformatted: Vec<u8>,
    out: Outbox,
    /// `log-line` patterns this run's lines are tested against; None for
    /// most pipes, and once every watch is done.
    watches: Option<Box<Watches>>,
}

/// A `[log]` service's reader's lines for its directory.
struct FileLines {
    files: Arc<LogFiles>,
    /// A second splitter when the lines go to stdout too (then `lines`
    /// prefixes them); None when `lines` makes them bare already.
    splitter: Option<LineSplitter>,
}

impl FileLines {
    /// The batch for the directory of the lines `input` ended, which
    /// `formatted` holds formatted for stdout; taken from it when only the
    /// directory gets them.
    fn batch(&mut self, input: &[u8], stamp: &Stamp, formatted: &mut Vec<u8>) -> FileBatch {
        let lines = match &mut self.splitter {
            Some(splitter) => {
                let mut lines = Vec::with_capacity(input.len() + 64);
                splitter.push(input, stamp, &mut lines, usize::MAX);
                lines
            }
            None => std::mem::take(formatted),
        };
        FileBatch {
            files: self.files.clone(),
            lines,
        }
    }

    fn finish(&mut self, stamp: &Stamp, formatted: &mut Vec<u8>) -> FileBatch {
        let lines = match &mut self.splitter {
            Some(splitter) => {
                let mut lines = Vec::new();
                splitter.finish(stamp, &mut lines);
                lines
            }
            None => std::mem::take(formatted),
        };
        FileBatch {
            files: self.files.clone(),
            lines,
        }
    }
}

/// What one look at the pipe found.
enum Read {
    Batch(Vec<u8>, Option<FileBatch>),
    Nothing,
    End,
}

impl Reader {
    async fn run(mut self, receiver: pipe::Receiver) {
        loop {
            let read = if self.unformatted.is_empty() {
                if receiver.readable().await.is_err() {
                    break;
                }
                self.read(&receiver)
            } else {
                let (bytes, file) = self.leftover();
                Read::Batch(bytes, file)
            };
            match read {
                Read::End => break,
                Read::Nothing => {}
                Read::Batch(bytes, file) if bytes.is_empty() && file.as_ref().is_none_or(|f| f.lines.is_empty()) => {
                    self.out.keep(bytes)
                }
                Read::Batch(bytes, file) => {
                    if !self.send(bytes, file).await {
                        return;
                    }
                }
            }
        }
        if let Some(watches) = &mut self.watches {
            watches.finish();
        }
        // The end: what is left, then a last line without newline.
        while !self.unformatted.is_empty() {
            let (bytes, file) = self.leftover();
            if !self.send(bytes, file).await {
                return;
            }
        }
        let mut bytes = self.out.buffer(MAX_LINE);
        let stamp = Stamp::now(self.style);
        self.lines.finish(&stamp, &mut bytes);
        let file = self.files.as_mut().map(|f| f.finish(&stamp, &mut bytes));
        if !bytes.is_empty() || file.as_ref().is_some_and(|f| !f.lines.is_empty()) {
            self.send(bytes, file).await;
        }
    }

    /// Reads what the pipe holds and formats it into a batch.
    fn read(&mut self, receiver: &pipe::Receiver) -> Read {
        READ_BUFFER.with_borrow_mut(|buf| {
            buf.resize(READ, 0);
            match receiver.try_read(buf) {
                Ok(0) => Read::End, // the process (and anything it left) is gone
                Ok(n) => {
                    if let Some(watches) = &mut self.watches
                        && !watches.scan(&buf[..n])
                    {
                        self.watches = None; // every watch is done
                    }
                    let mut bytes = self.out.buffer(n);
                    let stamp = Stamp::now(self.style);
                    let took = self.lines.push(&buf[..n], &stamp, &mut bytes, BATCH);
                    let file = self.files.as_mut().map(|f| f.batch(&buf[..took], &stamp, &mut bytes));
                    self.unformatted.extend_from_slice(&buf[took..n]);
                    Read::Batch(bytes, file)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Nothing,
                Err(_) => Read::End,
            }
        })
    }

    /// The next batch from bytes read before.
    fn leftover(&mut self) -> (Vec<u8>, Option<FileBatch>) {
        let mut bytes = self.out.buffer(self.unformatted.len());
        let stamp = Stamp::now(self.style);
        let took = self.lines.push(&self.unformatted, &stamp, &mut bytes, BATCH);
        let file = self
            .files
            .as_mut()
            .map(|f| f.batch(&self.unformatted[..took], &stamp, &mut bytes));
        self.unformatted.drain(..took);
        if self.unformatted.is_empty() {
            // A flood of short lines is over: nothing kept for it.
            self.unformatted = Vec::new();
        }
        (bytes, file)
    }

    async fn send(&self, bytes: Vec<u8>, file: Option<FileBatch>) -> bool {
        self.out
            .send(Batch {
                stream: self.stream,
                bytes,
                file,
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_hold_whole_lines_up_to_pipe_buf() {
        let line = |n: usize| {
            let mut l = vec![b'x'; n - 1];
            l.push(b'\n');
            l
        };
        // Short enough: one piece.
        assert_eq!(piece(&line(100)), 100);
        assert_eq!(piece(&line(PIPE_BUF)), PIPE_BUF);
        // Lines of 100: as many whole ones as fit.
        let many: Vec<u8> = (0..100).flat_map(|_| line(100)).collect();
        assert_eq!(piece(&many), 4000);
        // A line longer than PIPE_BUF goes alone, whole.
        let long = [line(10_000), line(100)].concat();
        assert_eq!(piece(&long), 10_000);
        let after_short = [line(100), line(10_000)].concat();
        assert_eq!(piece(&after_short), 100);
        // No newline at all (cannot happen: batches end with one): all.
        assert_eq!(piece(&[b'x'; 5000]), 5000);
    }

    #[test]
    fn a_writer_to_a_pipe_writes_every_line_whole() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let target = Target::new(write.as_fd(), None);
        assert!(target.pipe);
        let lines: Vec<u8> = (0..2000).flat_map(|i| format!("line {i:05}\n").into_bytes()).collect();
        let expected = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut file = std::fs::File::from(read);
            std::io::Read::read_to_end(&mut file, &mut got).unwrap();
            got
        });
        target.write_lines(&lines).unwrap();
        drop(write);
        assert_eq!(reader.join().unwrap(), expected);
    }
}
