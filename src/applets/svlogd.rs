//! `svlogd`: runit's service logging daemon, on [`crate::logdir`]: reads
//! standard input until its end and writes each line to every log directory
//! that selects it, rotating as each directory's `config` says.
//!
//! As runit 2.1.2's: the options, the directory layout and file modes, the
//! `config` settings but `!processor` and `u`/`U` (reported, then ignored),
//! the timestamps, SIGHUP (close, read `config` again, reopen), SIGALRM
//! (rotate now), SIGTERM (write out what was read, exit 0), exit 111 on a
//! usage error or with no usable directory, and a pause of 3 s and a retry
//! while a directory cannot be written (a full disk), so that no line is
//! lost. Different on purpose (docs/applets.md): a line is written in one
//! piece into one file, a last line without a newline is kept (runit drops
//! it), SIGTERM ends a pause (exit 111: the lines not written are lost), and
//! lines are written a buffer at a time, not one `write` each.
//!
//! It is a process of its own, never PID 1: it blocks in `ppoll` on its
//! input, with SIGTERM, SIGHUP and SIGALRM blocked except there, so each
//! one wakes it and is handled between two reads.

mod args;
mod input;

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::time::TimeSpec;

use crate::logdir::stamp::StampCache;
use crate::logdir::{LogDir, LogDirError, Piece, Settings};
pub use args::GETOPT;
use args::{Options, USAGE_EXIT};
use input::Input;

/// runit's svlogd exits so on any fatal error.
const FATAL_EXIT: i32 = 111;
/// baseinit's smallest read and write buffers: a read of a busy pipe, and
/// a write per 64 KiB of lines rather than per line.
const MIN_BUFFER: usize = 64 * 1024;
/// How long svlogd waits before it tries a failed write again (runit's).
const PAUSE: Duration = Duration::from_secs(3);

static TERM: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);
static ALARM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    let flag = match signal {
        libc::SIGTERM => &TERM,
        libc::SIGHUP => &HANGUP,
        _ => &ALARM,
    };
    flag.store(true, Ordering::SeqCst);
}

/// Runs `svlogd` with `args` (args[0] is the program name); its exit status.
pub fn main(args: &[OsString]) -> i32 {
    let options = match args::parse(args) {
        Ok(options) => options,
        Err(refused) => {
            let progname = args.first().map_or_else(|| "svlogd".into(), |a| a.to_string_lossy());
            let _ = std::io::stderr().write_all(refused.text(&progname).as_bytes());
            return USAGE_EXIT;
        }
    };
    let unblocked = match catch_signals() {
        Ok(mask) => mask,
        Err(e) => {
            say("fatal", format_args!("cannot catch signals: {}", e.desc()));
            return FATAL_EXIT;
        }
    };
    let mut svlogd = Svlogd::new(options, unblocked);
    match svlogd.run() {
        Ok(()) => 0,
        Err(Fatal) => FATAL_EXIT,
    }
}

/// Catches SIGTERM, SIGHUP and SIGALRM into flags and blocks them; the
/// mask to wait with, which lets them in.
fn catch_signals() -> Result<SigSet, Errno> {
    let mut ours = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGALRM] {
        ours.add(signal);
        // No SA_RESTART: the signal ends the ppoll it interrupts.
        let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler only stores to atomics, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    let mut unblocked = SigSet::thread_get_mask()?;
    for signal in ours.iter() {
        unblocked.remove(signal);
    }
    ours.thread_block()?;
    Ok(unblocked)
}

/// A message on standard error, as runit's: `svlogd: KIND: MESSAGE`. A
/// standard error that cannot be written is no reason to stop logging.
fn say(kind: &str, message: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "svlogd: {kind}: {message}");
}

/// svlogd gives up (after saying why).
#[derive(Debug)]
struct Fatal;

/// A directory named on the command line, open or not.
struct Slot {
    path: PathBuf,
    log: Option<LogDir>,
}

/// One svlogd run.
struct Svlogd {
    options: Options,
    settings: Settings,
    slots: Vec<Slot>,
    /// The signal mask to wait with.
    unblocked: SigSet,
    /// Stamps for the lines alerted to standard error.
    stamps: Option<StampCache>,
    /// An alert being put together.
    alert: Vec<u8>,
}

impl Svlogd {
    fn new(options: Options, unblocked: SigSet) -> Svlogd {
        let settings = Settings {
            timestamp: options.timestamp,
            line_max: options.line_max,
            defaults: crate::logdir::Config::default(),
            read_config: true,
            buffer: options.buffer.max(MIN_BUFFER),
        };
        let slots = options
            .dirs
            .iter()
            .map(|dir| Slot {
                path: PathBuf::from(dir),
                log: None,
            })
            .collect();
        Svlogd {
            stamps: options.timestamp.map(StampCache::new),
            options,
            settings,
            slots,
            unblocked,
            alert: Vec::new(),
        }
    }

    fn run(&mut self) -> Result<(), Fatal> {
        self.open_all(SystemTime::now())?;
        let mut input = Input::new(self.settings.buffer);
        let stdin = std::io::stdin();
        loop {
            if TERM.swap(false, Ordering::SeqCst) {
                self.info("sigterm received.");
                break;
            }
            if HANGUP.swap(false, Ordering::SeqCst) {
                self.info("sighangup received.");
                self.open_all(SystemTime::now())?;
            }
            let now = SystemTime::now();
            if ALARM.swap(false, Ordering::SeqCst) {
                self.info("sigalarm received.");
                self.each(|log| log.rotate(now))?;
            }
            self.each(|log| log.tick(now))?;
            let timeout = self.next_deadline().map(|deadline| {
                let wait = deadline.duration_since(now).unwrap_or_default();
                TimeSpec::from_duration(wait)
            });
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            match ppoll(&mut fds, timeout, Some(self.unblocked)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    say("warning", format_args!("cannot wait for standard input: {}", e.desc()));
                    break;
                }
            }
            let read = nix::unistd::read(stdin.as_fd(), input.room());
            match read {
                Ok(0) => break,
                Ok(n) => input.filled(n),
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => {
                    say("warning", format_args!("unable to read standard input: {}", e.desc()));
                    break;
                }
            }
            // One clock reading stamps every line of the read.
            let now = SystemTime::now();
            input.cut(|bytes, piece| self.deliver(bytes, piece, now))?;
            self.each(|log| log.flush(now))?;
        }
        let now = SystemTime::now();
        if let Some((bytes, piece)) = input.rest() {
            self.deliver(bytes, piece, now)?;
        }
        self.close_all(now)
    }

    /// Opens every directory anew (after closing it, on SIGHUP); fatal when
    /// none could be.
    fn open_all(&mut self, now: SystemTime) -> Result<(), Fatal> {
        for at in 0..self.slots.len() {
            if let Some(log) = self.slots[at].log.take() {
                self.info(format_args!("close: {}", log.path().display()));
                let log = match log.reopen(&self.settings, now) {
                    Ok(log) => Some(log),
                    Err(failed) => {
                        let (kept, e) = *failed;
                        say("warning", e);
                        kept
                    }
                };
                self.slots[at].log = log;
            } else {
                match LogDir::open(&self.slots[at].path, &self.settings, now) {
                    Ok(log) => self.slots[at].log = Some(log),
                    Err(e) => say("warning", e),
                }
            }
            self.report(at);
        }
        if self.slots.iter().all(|slot| slot.log.is_none()) {
            say("fatal", "no functional log directories.");
            return Err(Fatal);
        }
        Ok(())
    }

    /// One line or piece to every open directory; the alerts to stderr.
    fn deliver(&mut self, bytes: &mut [u8], piece: Piece, now: SystemTime) -> Result<(), Fatal> {
        if let Some(table) = &self.options.replace {
            for byte in bytes.iter_mut() {
                *byte = table[usize::from(*byte)];
            }
        }
        for at in 0..self.slots.len() {
            let verdict = self.persist(at, |log| log.write(bytes, piece, now))?;
            if verdict.is_some_and(|v| v.alert) {
                self.alert(at, bytes, piece, now);
            }
        }
        Ok(())
    }

    /// An `e`-selected line on standard error: timestamp, prefix, the first
    /// `-l` bytes and `...` when there were more (runit's, also when the
    /// line is exactly `-l` bytes).
    fn alert(&mut self, at: usize, bytes: &[u8], piece: Piece, now: SystemTime) {
        let Some(log) = &self.slots[at].log else { return };
        self.alert.clear();
        if let Some(stamps) = &mut self.stamps {
            self.alert.extend_from_slice(stamps.get(now));
        }
        self.alert.extend_from_slice(log.prefix());
        let shown = bytes.len().min(self.options.line_max);
        self.alert.extend_from_slice(&bytes[..shown]);
        if bytes.len() >= self.options.line_max || piece == Piece::First {
            self.alert.extend_from_slice(b"...");
        }
        self.alert.push(b'\n');
        let _ = std::io::stderr().write_all(&self.alert);
    }

    /// `op` on every open directory, each until it works.
    fn each(&mut self, mut op: impl FnMut(&mut LogDir) -> Result<(), LogDirError>) -> Result<(), Fatal> {
        for at in 0..self.slots.len() {
            self.persist(at, &mut op)?;
        }
        Ok(())
    }

    /// `op` on directory `at` (None when it is not open), until it works:
    /// after a failure svlogd says so and pauses, as runit does, so that
    /// the lines wait rather than go. SIGTERM during a pause ends svlogd.
    fn persist<T>(
        &mut self,
        at: usize,
        mut op: impl FnMut(&mut LogDir) -> Result<T, LogDirError>,
    ) -> Result<Option<T>, Fatal> {
        loop {
            let Some(log) = &mut self.slots[at].log else {
                return Ok(None);
            };
            let result = op(log);
            self.report(at);
            match result {
                Ok(value) => return Ok(Some(value)),
                Err(e) => self.pause(&e)?,
            }
        }
    }

    /// Says why, then waits 3 s (or less: until a signal comes).
    fn pause(&self, e: &LogDirError) -> Result<(), Fatal> {
        say("pausing", e);
        // Interrupted by a signal or not, the flags tell.
        let _ = ppoll(&mut [], Some(TimeSpec::from_duration(PAUSE)), Some(self.unblocked));
        if TERM.load(Ordering::SeqCst) {
            say(
                "fatal",
                format_args!("{e}; exiting on SIGTERM, lines not written are lost"),
            );
            return Err(Fatal);
        }
        Ok(())
    }

    /// Closes every directory, writing out what it holds.
    fn close_all(&mut self, now: SystemTime) -> Result<(), Fatal> {
        for at in 0..self.slots.len() {
            while let Some(log) = self.slots[at].log.take() {
                self.info(format_args!("close: {}", log.path().display()));
                if let Err(failed) = log.close(now) {
                    let (log, e) = *failed;
                    self.slots[at].log = Some(log);
                    self.report(at);
                    self.pause(&e)?;
                }
            }
        }
        Ok(())
    }

    /// The soonest age-limit rotation of any directory.
    fn next_deadline(&self) -> Option<SystemTime> {
        self.slots.iter().filter_map(|slot| slot.log.as_ref()?.deadline()).min()
    }

    /// Says what directory `at` has to say: warnings always, the rest with `-v`.
    fn report(&mut self, at: usize) {
        let Some(log) = &mut self.slots[at].log else { return };
        let notices = log.take_notices();
        for notice in &notices {
            if notice.is_warning() {
                say("warning", notice.in_dir(log.path()));
            } else if self.options.verbose {
                say("info", notice.in_dir(log.path()));
            }
        }
    }

    fn info(&self, message: impl Display) {
        if self.options.verbose {
            say("info", message);
        }
    }
}
