//! runit's `supervise/` directory of each service, kept as runsv keeps it:
//! the lock, the FIFOs `sv` writes, and the state files it reads.
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

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::libc;
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

use super::status::{RunState, Status};

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
    pub fn open(service_dir: &Path, runtime_dirs: &[&Path], name: &str) -> io::Result<(Self, PathBuf)> {
        let dir = locate(service_dir, runtime_dirs, name)?;
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
/// reports EOF when a writer such as `sv` closes it. Called with the
/// directory made (not in the reading task), before `ok` has a reader: an
/// `sv` that finds the supervisor there finds a reader of `control` too.
/// Needs the tokio runtime.
pub fn open_control(control: &Path) -> io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(control)
}

/// Reads command bytes from the opened `control` FIFO for as long as the
/// task lives and sends each, tagged with `unit`, to the supervisor (which
/// alone acts on them). The tag is the supervisor's own type, so that this
/// module needs nothing from it.
pub async fn read_commands<T: Copy + Send + 'static>(
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
/// the target of a `supervise` symlink, as runsv), else under the first of
/// `runtime_dirs` where it can be made.
fn locate(service_dir: &Path, runtime_dirs: &[&Path], name: &str) -> io::Result<PathBuf> {
    let in_service = service_dir.join("supervise");
    let builder = || {
        let mut b = fs::DirBuilder::new();
        b.mode(0o700);
        b
    };
    let mut failed = match builder().create(&in_service) {
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
            e
        }
        Err(e) => e,
    };
    for runtime_dir in runtime_dirs {
        let fallback = runtime_dir.join("supervise").join(name);
        match builder().recursive(true).create(&fallback) {
            Ok(()) => return Ok(fallback),
            Err(e) => failed = e,
        }
    }
    Err(failed)
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

    use crate::runit::status::tests::status;

    #[test]
    fn creates_runits_layout_and_holds_the_lock() {
        let service = tempfile::tempdir().unwrap();
        let runtime = tempfile::tempdir().unwrap();
        let (mut sup, control) = Supervise::open(service.path(), &[runtime.path()], "web").unwrap();
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
        assert!(Supervise::open(service.path(), &[runtime.path()], "web").is_err());
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
        let (sup, _) = Supervise::open(service.path(), &[runtime.path()], "web").unwrap();
        assert_eq!(sup.dir(), service.path().join("supervise"));
        assert!(elsewhere.is_dir());

        // A service directory where nothing can be created: under a file.
        let file = service.path().join("plain");
        fs::write(&file, "").unwrap();
        let (sup, _) = Supervise::open(&file, &[runtime.path()], "ro").unwrap();
        assert_eq!(sup.dir(), runtime.path().join("supervise/ro"));
        // A runtime directory where nothing can be created either (under
        // /proc): the next one.
        let (sup, _) = Supervise::open(&file, &[Path::new("/proc/no-such/run"), runtime.path()], "ro2").unwrap();
        assert_eq!(sup.dir(), runtime.path().join("supervise/ro2"));
        assert!(Supervise::open(&file, &[Path::new("/proc/no-such/run")], "ro3").is_err());
    }
}
