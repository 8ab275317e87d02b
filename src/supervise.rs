//! runit's `supervise/` directory of each service: the state files the stock
//! `sv` reads and the FIFOs it writes, in runit's formats.
//!
//! Layout (as runsv): `lock` (flock'd while we supervise), `control` (FIFO,
//! one byte per command), `ok` (FIFO we keep open for reading so `sv` can tell
//! a supervisor runs), `status` (20 bytes), `stat` (text), `pid` (text). Files
//! are written to a `.new` name and renamed. When `SERVICE/supervise` cannot be
//! created (a read-only service directory), the state lives in
//! `RUNTIME/supervise/NAME` instead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::libc;
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

/// runit's three states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Down = 0,
    Run = 1,
    Finish = 2,
}

/// What `supervise/status` and `supervise/stat` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// When the current state began (runit: the start of `run`, or the moment
    /// it went down).
    pub since: SystemTime,
    /// The pid of `run` (or of `finish` while finishing); None when down.
    pub pid: Option<i32>,
    pub paused: bool,
    pub want_up: bool,
    pub got_term: bool,
    pub state: RunState,
}

/// TAI64 label of the Unix epoch: 2^62 + 10 leap seconds, as runit's taia.
const TAI64_EPOCH: u64 = (1 << 62) + 10;

impl Status {
    /// runit's 20-byte record: TAI64N timestamp (12 bytes, big-endian), pid
    /// (4 bytes, little-endian), paused, want ('u'/'d'), got TERM, state.
    pub fn encode(&self) -> [u8; 20] {
        let since = self.since.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut out = [0u8; 20];
        out[0..8].copy_from_slice(&(TAI64_EPOCH + since.as_secs()).to_be_bytes());
        out[8..12].copy_from_slice(&since.subsec_nanos().to_be_bytes());
        out[12..16].copy_from_slice(&(self.pid.unwrap_or(0) as u32).to_le_bytes());
        out[16] = u8::from(self.paused);
        out[17] = if self.want_up { b'u' } else { b'd' };
        out[18] = u8::from(self.got_term);
        out[19] = self.state as u8;
        out
    }

    /// runit's `stat` text, e.g. `run, got TERM, want down`.
    pub fn stat_text(&self) -> String {
        let mut text = String::from(match self.state {
            RunState::Down => "down",
            RunState::Run => "run",
            RunState::Finish => "finish",
        });
        if self.paused {
            text.push_str(", paused");
        }
        if self.got_term {
            text.push_str(", got TERM");
        }
        if self.state != RunState::Down && !self.want_up {
            text.push_str(", want down");
        }
        text.push('\n');
        text
    }
}

/// A command written to `supervise/control`, one byte each (runit's set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `u`: wanted up.
    Up,
    /// `d`: wanted down.
    Down,
    /// `o`: run once.
    Once,
    /// `x`: runsv's exit; for baseinit, which supervises every service in one
    /// process, the same as down.
    Exit,
    /// `p`: SIGSTOP, and the paused flag.
    Pause,
    /// `c`: SIGCONT, and the paused flag cleared.
    Continue,
    /// `t` `k` `h` `a` `i` `q` `1` `2`: a signal to the service's process group.
    Signal(nix::sys::signal::Signal),
}

impl Command {
    pub fn parse(byte: u8) -> Option<Self> {
        use nix::sys::signal::Signal::*;
        Some(match byte {
            b'u' => Command::Up,
            b'd' => Command::Down,
            b'o' => Command::Once,
            b'x' => Command::Exit,
            b'p' => Command::Pause,
            b'c' => Command::Continue,
            b't' => Command::Signal(SIGTERM),
            b'k' => Command::Signal(SIGKILL),
            b'h' => Command::Signal(SIGHUP),
            b'a' => Command::Signal(SIGALRM),
            b'i' => Command::Signal(SIGINT),
            b'q' => Command::Signal(SIGQUIT),
            b'1' => Command::Signal(SIGUSR1),
            b'2' => Command::Signal(SIGUSR2),
            _ => return None,
        })
    }
}

/// An open `supervise/` directory.
pub struct Supervise {
    dir: PathBuf,
    /// Held for as long as we supervise: runsv's lock, so two supervisors
    /// never fight over one service.
    _lock: Flock<File>,
    /// Read end of `ok`, kept open: `sv` opens it for writing, which fails
    /// with ENXIO when nobody reads. Opened after the first state is
    /// written, so that until then `sv` says `runsv not running` and never
    /// reads a state file that is half written or from an earlier run.
    ok: Option<File>,
    last: Option<Status>,
    last_pid: Option<Option<i32>>,
}

impl Supervise {
    /// Opens (creating as needed) the supervise directory of the service in
    /// `service_dir` named `name`, and returns it with the path of its control
    /// FIFO (which the caller reads).
    pub fn open(service_dir: &Path, runtime_dir: &Path, name: &str) -> io::Result<(Self, PathBuf)> {
        let dir = locate(service_dir, runtime_dir, name)?;
        let lock_file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(dir.join("lock"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{}/lock is held by another supervisor: {errno}", dir.display()),
            )
        })?;
        for fifo in ["control", "ok"] {
            make_fifo(&dir.join(fifo))?;
        }
        let control = dir.join("control");
        Ok((
            Supervise {
                dir,
                _lock: lock,
                ok: None,
                last: None,
                last_pid: None,
            },
            control,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state last written, if any.
    pub fn last_state(&self) -> Option<RunState> {
        self.last.map(|s| s.state)
    }

    /// The pid last written: None before the first write, Some(None) when down.
    pub fn last_pid(&self) -> Option<Option<i32>> {
        self.last_pid
    }

    /// Writes `status`, `stat` and (when it changed) `pid`, each atomically;
    /// nothing when nothing changed. The first write goes straight into the
    /// files (nobody reads them before `ok` has a reader), then opens `ok`;
    /// the later ones write a `.new` file and rename it over the old one,
    /// as runsv does.
    pub fn write(&mut self, status: &Status) -> io::Result<()> {
        if self.last.as_ref() == Some(status) {
            return Ok(());
        }
        let write = if self.ok.is_some() { replace } else { overwrite };
        if self.last_pid != Some(status.pid) {
            let text = status.pid.map(|p| format!("{p}\n")).unwrap_or_default();
            write(&self.dir, "pid", text.as_bytes())?;
            self.last_pid = Some(status.pid);
        }
        write(&self.dir, "stat", status.stat_text().as_bytes())?;
        write(&self.dir, "status", &status.encode())?;
        self.last = Some(*status);
        if self.ok.is_none() {
            self.ok = Some(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(self.dir.join("ok"))?,
            );
        }
        Ok(())
    }
}

/// Opens the `control` FIFO for reading, read-write so that it never
/// reports EOF when a writer such as `sv` closes it. Called before the
/// service starts (not in the reading task), so that an `sv` run the moment
/// the service is up finds a reader. Needs the tokio runtime.
pub fn open_control(control: &Path) -> io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(control)
}

/// Reads command bytes from the opened `control` FIFO for as long as the
/// task lives and sends each, tagged with `unit`, to the supervisor (which
/// alone acts on them).
pub async fn read_commands<T: Copy>(
    receiver: tokio::net::unix::pipe::Receiver,
    control: PathBuf,
    unit: T,
    commands: tokio::sync::mpsc::UnboundedSender<(T, u8)>,
) {
    let mut buf = [0u8; 64];
    loop {
        if let Err(e) = receiver.readable().await {
            tracing::warn!("{}: {e}", control.display());
            return;
        }
        match receiver.try_read(&mut buf) {
            Ok(n) => {
                for byte in &buf[..n] {
                    if commands.send((unit, *byte)).is_err() {
                        return; // the supervisor is gone
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::warn!("{}: {e}", control.display());
                return;
            }
        }
    }
}

/// Where the supervise directory of a service goes: `SERVICE/supervise` (or
/// the target of a `supervise` symlink, as runsv), else under the runtime
/// directory.
fn locate(service_dir: &Path, runtime_dir: &Path, name: &str) -> io::Result<PathBuf> {
    let in_service = service_dir.join("supervise");
    let builder = || {
        let mut b = fs::DirBuilder::new();
        b.mode(0o700);
        b
    };
    match builder().create(&in_service) {
        Ok(()) => return Ok(in_service),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // A directory, or a symlink whose target may still need creating.
            if in_service.is_dir() {
                return Ok(in_service);
            }
            if let Ok(target) = fs::read_link(&in_service) {
                let target = service_dir.join(target);
                if builder().recursive(true).create(&target).is_ok() {
                    return Ok(in_service);
                }
            }
        }
        Err(_) => {}
    }
    let fallback = runtime_dir.join("supervise").join(name);
    builder().recursive(true).create(&fallback)?;
    Ok(fallback)
}

fn make_fifo(path: &Path) -> io::Result<()> {
    match mkfifo(path, Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(io::Error::from(errno)),
    }
    let meta = fs::metadata(path)?;
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_fifo() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a FIFO", path.display()),
        ));
    }
    Ok(())
}

/// Writes `dir/name.new`, then renames it over `dir/name`.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let new = format!("{name}.new");
    overwrite(dir, &new, bytes)?;
    fs::rename(dir.join(new), dir.join(name))
}

/// Writes `dir/name` in place (created, or truncated first).
fn overwrite(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(dir.join(name))?;
    file.write_all(bytes)
}

/// The raw fd of an open supervise lock, for tests.
#[cfg(test)]
fn lock_fd(s: &Supervise) -> i32 {
    use std::os::fd::AsRawFd;
    s._lock.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status() -> Status {
        Status {
            since: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            pid: Some(0x0102_0304),
            paused: false,
            want_up: true,
            got_term: false,
            state: RunState::Run,
        }
    }

    #[test]
    fn encodes_runits_twenty_bytes() {
        let bytes = status().encode();
        assert_eq!(
            u64::from_be_bytes(bytes[0..8].try_into().unwrap()),
            (1 << 62) + 10 + 1_700_000_000
        );
        assert_eq!(u32::from_be_bytes(bytes[8..12].try_into().unwrap()), 123_456_789);
        assert_eq!(&bytes[12..16], &[0x04, 0x03, 0x02, 0x01], "pid is little-endian");
        assert_eq!(&bytes[16..20], &[0, b'u', 0, 1]);
        let down = Status {
            pid: None,
            paused: true,
            want_up: false,
            got_term: true,
            state: RunState::Down,
            ..status()
        };
        assert_eq!(&down.encode()[12..20], &[0, 0, 0, 0, 1, b'd', 1, 0]);
    }

    #[test]
    fn stat_text_as_runsv() {
        let table = [
            (status(), "run\n"),
            (
                Status {
                    want_up: false,
                    got_term: true,
                    ..status()
                },
                "run, got TERM, want down\n",
            ),
            (
                Status {
                    paused: true,
                    ..status()
                },
                "run, paused\n",
            ),
            (
                Status {
                    state: RunState::Finish,
                    ..status()
                },
                "finish\n",
            ),
            (
                Status {
                    state: RunState::Down,
                    want_up: false,
                    ..status()
                },
                "down\n",
            ),
        ];
        for (status, text) in table {
            assert_eq!(status.stat_text(), text, "{status:?}");
        }
    }

    #[test]
    fn parses_runits_control_bytes() {
        use nix::sys::signal::Signal;
        let table = [
            (b'u', Some(Command::Up)),
            (b'd', Some(Command::Down)),
            (b'o', Some(Command::Once)),
            (b'x', Some(Command::Exit)),
            (b'p', Some(Command::Pause)),
            (b'c', Some(Command::Continue)),
            (b't', Some(Command::Signal(Signal::SIGTERM))),
            (b'k', Some(Command::Signal(Signal::SIGKILL))),
            (b'h', Some(Command::Signal(Signal::SIGHUP))),
            (b'a', Some(Command::Signal(Signal::SIGALRM))),
            (b'i', Some(Command::Signal(Signal::SIGINT))),
            (b'q', Some(Command::Signal(Signal::SIGQUIT))),
            (b'1', Some(Command::Signal(Signal::SIGUSR1))),
            (b'2', Some(Command::Signal(Signal::SIGUSR2))),
            (b'\n', None),
            (b'z', None),
        ];
        for (byte, command) in table {
            assert_eq!(Command::parse(byte), command, "{:?}", byte as char);
        }
    }

    #[test]
    fn creates_runits_layout_and_holds_the_lock() {
        let service = tempfile::tempdir().unwrap();
        let runtime = tempfile::tempdir().unwrap();
        let (mut sup, control) = Supervise::open(service.path(), runtime.path(), "web").unwrap();
        assert_eq!(sup.dir(), service.path().join("supervise"));
        assert_eq!(control, service.path().join("supervise/control"));
        let dir = service.path().join("supervise");
        let open_ok = || {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.join("ok"))
        };
        // Until the first state is written, `sv` finds no supervisor.
        assert_eq!(open_ok().unwrap_err().raw_os_error(), Some(libc::ENXIO));
        sup.write(&status()).unwrap();
        assert_eq!(fs::read(dir.join("status")).unwrap(), status().encode());
        assert_eq!(fs::read_to_string(dir.join("stat")).unwrap(), "run\n");
        assert_eq!(fs::read_to_string(dir.join("pid")).unwrap(), "16909060\n");
        assert!(lock_fd(&sup) >= 0);
        // A second supervisor of the same directory is refused.
        assert!(Supervise::open(service.path(), runtime.path(), "web").is_err());
        // `ok` has a reader: opening it for writing succeeds (sv's test).
        open_ok().unwrap();
        // Later states replace the files whole (a new inode, renamed over).
        use std::os::unix::fs::MetadataExt;
        let inode = fs::metadata(dir.join("status")).unwrap().ino();
        sup.write(&Status {
            state: RunState::Down,
            pid: None,
            ..status()
        })
        .unwrap();
        assert_ne!(fs::metadata(dir.join("status")).unwrap().ino(), inode);
        assert_eq!(fs::read_to_string(dir.join("stat")).unwrap(), "down\n");
        assert_eq!(fs::read_to_string(dir.join("pid")).unwrap(), "");
        assert!(!dir.join("status.new").exists());
    }

    #[test]
    fn follows_a_supervise_symlink_and_falls_back_to_the_runtime_dir() {
        let service = tempfile::tempdir().unwrap();
        let runtime = tempfile::tempdir().unwrap();
        let elsewhere = runtime.path().join("runit/supervise.web");
        std::os::unix::fs::symlink(&elsewhere, service.path().join("supervise")).unwrap();
        let (sup, _) = Supervise::open(service.path(), runtime.path(), "web").unwrap();
        assert_eq!(sup.dir(), service.path().join("supervise"));
        assert!(elsewhere.is_dir());

        // A service directory where nothing can be created: under a file.
        let file = service.path().join("plain");
        fs::write(&file, "").unwrap();
        let (sup, _) = Supervise::open(&file, runtime.path(), "ro").unwrap();
        assert_eq!(sup.dir(), runtime.path().join("supervise/ro"));
    }
}
