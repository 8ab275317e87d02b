//! A log directory as runit's svlogd keeps it: lines appended to `current`,
//! rotated to `@<tai64n>.s` files by size and age, the oldest deleted, the
//! directory held by an exclusive `flock` on `lock`, and its settings read
//! from `config`.
//!
//! It is synchronous and owns no thread, no timer and no signal: the caller
//! reads the input, passes the time, and calls [`LogDir::tick`] at
//! [`LogDir::deadline`]. So both the `svlogd` applet and, later, PID 1's
//! own log directories (a `[log]` section) can drive it. Lines are
//! formatted into one buffer allocated once and written when it is full or
//! on [`LogDir::flush`], so the steady state makes one `write` per buffer
//! and allocates nothing per line. A failed write or rotation is an error
//! value naming the directory or file: what was not written stays in the
//! buffer for the next [`LogDir::flush`], and the caller decides whether to
//! wait, retry or give up. Nothing here blocks but the file system calls.
//!
//! The decisions are pure and tested as tables: [`config`] (the `config`
//! file), [`pattern`] (which lines are selected), [`rotation`] (when to
//! rotate, which file to delete), [`stamp`] (timestamps and file names).
//!
//! Files, as runit's: `current` is 0644 while written and 0744 once closed
//! cleanly; a non-empty `current` without the owner's execute bit was left
//! mid-write, and is kept as `@<tai64n>.u` at the next open. Rotated files
//! are 0744; `lock` is 0600.

pub mod config;
pub mod pattern;
pub mod rotation;
pub mod stamp;

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, fchmod, fstatat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

pub use config::Config;
pub use pattern::Verdict;
pub use stamp::Timestamp;

use stamp::{ROTATED_LEN, STAMP_LEN, StampCache};

/// A `current` being written.
const WRITING: u32 = 0o644;
/// A `current` closed cleanly, and every rotated file.
const FINISHED: u32 = 0o744;
/// The most of a `config` file read.
const CONFIG_MAX: u64 = 1 << 20;

/// How a log directory is kept, before its `config` has its say.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The timestamp before each line, if any.
    pub timestamp: Option<Timestamp>,
    /// How much of a line the selection rules look at (svlogd's `-l`); also
    /// how close to the size limit a line ends for `current` to be rotated.
    pub line_max: usize,
    /// The limits and selection before `config` is read.
    pub defaults: Config,
    /// Read the directory's `config` file.
    pub read_config: bool,
    /// The write buffer: bytes formatted before one `write`.
    pub buffer: usize,
}

/// A failure, with what was being done and to which file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {what}: {}", path.display(), errno.desc())]
pub struct LogDirError {
    /// The directory, or the file in it.
    pub path: PathBuf,
    pub what: &'static str,
    pub errno: Errno,
}

impl LogDirError {
    /// The file system is full (what svlogd pauses on).
    pub fn is_disk_full(&self) -> bool {
        matches!(self.errno, Errno::ENOSPC | Errno::EDQUOT)
    }
}

/// Something that happened to a directory that its user may want to know:
/// warnings, and what svlogd's `-v` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Appending to an existing `current`.
    Append,
    /// A new `current`.
    New,
    /// `config` was read.
    ReadConfig,
    /// `current` became this rotated file, of this size.
    Rotated([u8; ROTATED_LEN], u64),
    /// A rotated file deleted for `n`.
    Deleted([u8; ROTATED_LEN]),
    /// A warning: a line of `config` not taken.
    Config(config::Problem),
    /// A warning: `config` could not be read (the defaults apply).
    ConfigUnreadable(Errno),
    /// A warning: `current` had been left mid-write, and was kept as this.
    Unfinished([u8; ROTATED_LEN]),
    /// A warning: the disk is full, so this rotated file was deleted (`N`).
    DiskFullDeleted([u8; ROTATED_LEN]),
    /// A warning: a rotated file could not be deleted.
    DeleteFailed([u8; ROTATED_LEN], Errno),
    /// A warning: the directory could not be listed for old files to delete.
    ListFailed(Errno),
}

impl Notice {
    /// Shown always (not only with `-v`).
    pub fn is_warning(&self) -> bool {
        !matches!(
            self,
            Notice::Append | Notice::New | Notice::ReadConfig | Notice::Rotated(..) | Notice::Deleted(_)
        )
    }

    /// The notice in words, about the directory `dir`.
    pub fn in_dir<'a>(&'a self, dir: &'a Path) -> impl fmt::Display + 'a {
        NoticeIn(self, dir)
    }
}

struct NoticeIn<'a>(&'a Notice, &'a Path);

impl fmt::Display for NoticeIn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.1.display();
        let name = |n: &[u8; ROTATED_LEN]| String::from_utf8_lossy(n).into_owned();
        match self.0 {
            Notice::Append => write!(f, "append: {dir}/current"),
            Notice::New => write!(f, "new: {dir}/current"),
            Notice::ReadConfig => write!(f, "read: {dir}/config"),
            Notice::Rotated(to, size) => write!(f, "rename: {dir}/current {} {size}", name(to)),
            Notice::Deleted(gone) => write!(f, "delete: {dir}/{}", name(gone)),
            Notice::Config(problem) => write!(f, "{dir}/config: {problem}"),
            Notice::ConfigUnreadable(errno) => {
                write!(f, "{dir}/config: cannot read it: {}; the defaults apply", errno.desc())
            }
            Notice::Unfinished(to) => write!(f, "{dir}/current was not closed cleanly: kept as {}", name(to)),
            Notice::DiskFullDeleted(gone) => write!(f, "{dir}: out of disk space, delete: {}", name(gone)),
            Notice::DeleteFailed(gone, errno) => {
                write!(
                    f,
                    "{dir}/{}: cannot delete the old log file: {}",
                    name(gone),
                    errno.desc()
                )
            }
            Notice::ListFailed(errno) => {
                write!(f, "{dir}: cannot list it for old log files to delete: {}", errno.desc())
            }
        }
    }
}

/// Which part of a line [`LogDir::write`] is given. A line longer than the
/// caller's buffer comes in pieces: `First`, any `Middle`, `Last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Whole,
    First,
    Middle,
    Last,
}

/// An open, locked log directory.
#[derive(Debug)]
pub struct LogDir {
    path: PathBuf,
    dir: OwnedFd,
    /// Held while open: another svlogd on the directory fails to lock it.
    _lock: Flock<File>,
    /// None after a rotation failed to open the new one: the next write
    /// tries again.
    current: Option<File>,
    config: Config,
    line_max: usize,
    buffer: usize,
    stamps: Option<StampCache>,
    /// `current`'s size, with what waits in `pending`.
    size: u64,
    /// Formatted, not yet written.
    pending: Vec<u8>,
    /// A line ended close enough to the limit: rotate before the next.
    rotate_due: bool,
    /// When `current` is next rotated by age (`t`).
    age_deadline: Option<SystemTime>,
    /// Inside a line given in pieces: whether it is selected.
    in_line: Option<bool>,
    /// The time the last rotated file was named by: the next is later, so
    /// that names sort as the files were made even when several rotations
    /// share a clock reading (and the oldest's name is not reused).
    last_named: Option<SystemTime>,
    notices: Vec<Notice>,
}

impl LogDir {
    /// Opens and locks the directory at `path`, reads its `config`, keeps
    /// an unfinished `current` as a `.u` file and opens `current`.
    pub fn open(path: &Path, settings: &Settings, now: SystemTime) -> Result<LogDir, LogDirError> {
        let fail = |what, errno| LogDirError {
            path: path.to_owned(),
            what,
            errno,
        };
        let dir = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("cannot open the log directory", e))?;
        let lock = open_in(&dir, "lock", OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT)
            .map_err(|e| fail("cannot open its lock file", e))?;
        let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| fail("cannot lock it (another svlogd on it?)", e))?;
        let mut notices = Vec::new();
        let config = if settings.read_config {
            read_config(&dir, &settings.defaults, &mut notices)
        } else {
            settings.defaults.clone()
        };
        let mut logdir = LogDir {
            path: path.to_owned(),
            dir,
            _lock: lock,
            current: None,
            age_deadline: (config.max_age_secs > 0).then(|| now + Duration::from_secs(config.max_age_secs)),
            config,
            line_max: settings.line_max,
            buffer: settings.buffer.max(1),
            stamps: settings.timestamp.map(StampCache::new),
            size: 0,
            pending: Vec::with_capacity(settings.buffer),
            rotate_due: false,
            in_line: None,
            last_named: None,
            notices,
        };
        let existed = logdir.keep_unfinished(now)?;
        logdir.open_current()?;
        let opened = if existed { Notice::Append } else { Notice::New };
        logdir.notices.push(opened);
        Ok(logdir)
    }

    /// The directory, as given to [`LogDir::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `p` prefix of its config.
    pub fn prefix(&self) -> &[u8] {
        &self.config.prefix
    }

    /// The settings read from `config`.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What happened since the last call (allocates only when something did).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// A whole line (without its newline), stamped at `now`.
    pub fn write_line(&mut self, line: &[u8], now: SystemTime) -> Result<Verdict, LogDirError> {
        self.write(line, Piece::Whole, now)
    }

    /// A line or a piece of one (without the newline): the timestamp and
    /// prefix go before a `Whole` or `First` piece, a newline after a
    /// `Whole` or `Last` one. Which lines are selected is decided on the
    /// first `line_max` bytes of a `Whole` or `First` piece. The verdict
    /// says whether the line goes to this directory, and whether it is
    /// alerted (`e`): the caller writes that to standard error.
    ///
    /// On an error nothing of `bytes` was taken: the same call may be made
    /// again (after a pause, say).
    pub fn write(&mut self, bytes: &[u8], piece: Piece, now: SystemTime) -> Result<Verdict, LogDirError> {
        let starts = matches!(piece, Piece::Whole | Piece::First);
        let ends = matches!(piece, Piece::Whole | Piece::Last);
        let verdict = if starts {
            pattern::judge(&self.config.rules, &bytes[..bytes.len().min(self.line_max)])
        } else {
            Verdict {
                selected: self.in_line.unwrap_or(true),
                alert: false,
            }
        };
        if !verdict.selected {
            self.in_line = (!ends).then_some(false);
            return Ok(verdict);
        }
        let stamp_len = if starts && self.stamps.is_some() {
            STAMP_LEN + 1
        } else {
            0
        };
        let prefix_len = if starts { self.config.prefix.len() } else { 0 };
        let len = (stamp_len + prefix_len + bytes.len() + usize::from(ends)) as u64;
        let rotate = if starts {
            self.rotate_due || rotation::before_line(self.size, len, self.config.max_size)
        } else {
            rotation::inside_line(self.size, self.config.max_size)
        };
        if rotate {
            self.rotate_now(now)?;
        }
        if !self.pending.is_empty() && self.pending.len() as u64 + len > self.buffer as u64 {
            self.write_pending()?;
        }
        // Taken from here on: nothing below fails.
        if starts {
            if let Some(stamps) = &mut self.stamps {
                self.pending.extend_from_slice(stamps.get(now));
            }
            self.pending.extend_from_slice(&self.config.prefix);
        }
        self.pending.extend_from_slice(bytes);
        if ends {
            self.pending.push(b'\n');
        }
        self.size += len;
        self.in_line = (!ends).then_some(true);
        if ends && rotation::after_line(self.size, self.config.max_size, self.line_max as u64) {
            self.rotate_due = true;
        }
        Ok(verdict)
    }

    /// Writes what is buffered, then rotates if a line asked for it.
    pub fn flush(&mut self, now: SystemTime) -> Result<(), LogDirError> {
        self.write_pending()?;
        if self.rotate_due {
            self.rotate_now(now)?;
        }
        Ok(())
    }

    /// Rotates `current` now, unless it is empty (svlogd's SIGALRM).
    pub fn rotate(&mut self, now: SystemTime) -> Result<(), LogDirError> {
        self.rotate_now(now)
    }

    /// When [`LogDir::tick`] is next due: the age limit's (`t`).
    pub fn deadline(&self) -> Option<SystemTime> {
        self.age_deadline
    }

    /// Rotates `current` if the age limit has come.
    pub fn tick(&mut self, now: SystemTime) -> Result<(), LogDirError> {
        match self.age_deadline {
            Some(deadline) if deadline <= now => self.rotate_now(now),
            _ => Ok(()),
        }
    }

    /// Writes what is buffered, makes `current` durable and marks it
    /// finished (0744), and lets the directory go. On an error it is handed
    /// back, still open, with what it could not write.
    pub fn close(mut self, now: SystemTime) -> Result<(), Box<(LogDir, LogDirError)>> {
        if let Err(e) = self.flush(now).and_then(|()| self.finish_current()) {
            return Err(Box::new((self, e)));
        }
        Ok(())
    }

    /// Closes the directory and opens it again, reading `config` anew
    /// (svlogd's SIGHUP). When the close fails the directory is handed back
    /// as it was; when the new open fails there is none.
    pub fn reopen(self, settings: &Settings, now: SystemTime) -> Result<LogDir, Box<(Option<LogDir>, LogDirError)>> {
        let path = self.path.clone();
        if let Err(failed) = self.close(now) {
            let (kept, e) = *failed;
            return Err(Box::new((Some(kept), e)));
        }
        LogDir::open(&path, settings, now).map_err(|e| Box::new((None, e)))
    }

    fn error(&self, file: &str, what: &'static str, errno: Errno) -> LogDirError {
        LogDirError {
            path: if file.is_empty() {
                self.path.clone()
            } else {
                self.path.join(file)
            },
            what,
            errno,
        }
    }

    /// runit's check at open: a `current` with bytes but without the owner's
    /// execute bit was being written when its writer died. It is kept as a
    /// `.u` file, and a fresh `current` is started. Whether a `current` is
    /// left to append to.
    fn keep_unfinished(&mut self, now: SystemTime) -> Result<bool, LogDirError> {
        let stat = match fstatat(&self.dir, "current", AtFlags::empty()) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(self.error("current", "cannot look at it", e)),
        };
        if stat.st_size == 0 || stat.st_mode & 0o100 != 0 {
            return Ok(true);
        }
        let name = self.free_name(now, true)?;
        nix::fcntl::renameat(&self.dir, "current", &self.dir, &name[..])
            .map_err(|e| self.error("current", "cannot keep the unfinished file", e))?;
        self.notices.push(Notice::Unfinished(name));
        self.delete_over_limit(Some(&name));
        Ok(false)
    }

    /// Opens (or creates) `current` for appending, 0644 while written.
    fn open_current(&mut self) -> Result<(), LogDirError> {
        let file = open_in(&self.dir, "current", OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT)
            .map_err(|e| self.error("current", "cannot open it", e))?;
        fchmod(&file, Mode::from_bits_truncate(WRITING))
            .map_err(|e| self.error("current", "cannot set its mode", e))?;
        let size = file
            .metadata()
            .map_err(|e| self.error("current", "cannot look at it", errno_of(&e)))?
            .len();
        self.size = size + self.pending.len() as u64;
        self.current = Some(file);
        Ok(())
    }

    /// Writes `pending` to `current`; on a full disk, deletes the oldest
    /// rotated file while `N` allows and tries again. What is not written
    /// stays in `pending`.
    fn write_pending(&mut self) -> Result<(), LogDirError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            self.open_current()?;
        }
        let mut written = 0;
        let result = loop {
            let Some(file) = &mut self.current else {
                break Err(self.error("current", "cannot write it", Errno::EBADF));
            };
            if written == self.pending.len() {
                break Ok(());
            }
            match file.write(&self.pending[written..]) {
                Ok(0) => break Err(self.error("current", "cannot write it", Errno::EIO)),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let errno = errno_of(&e);
                    if matches!(errno, Errno::ENOSPC | Errno::EDQUOT) && self.delete_for_space() {
                        continue;
                    }
                    break Err(self.error("current", "cannot write it", errno));
                }
            }
        };
        if written == self.pending.len() {
            self.pending.clear();
        } else {
            self.pending.drain(..written);
        }
        result
    }

    /// Rotates `current` when it has bytes; resets the age limit when it
    /// has passed (as runit, a rotation by size does not move it).
    fn rotate_now(&mut self, now: SystemTime) -> Result<(), LogDirError> {
        self.write_pending()?;
        if self.current.is_none() {
            self.open_current()?;
        }
        if let Some(deadline) = self.age_deadline
            && deadline <= now
        {
            self.age_deadline = Some(now + Duration::from_secs(self.config.max_age_secs));
        }
        if self.size == 0 {
            self.rotate_due = false;
            return Ok(());
        }
        if let Some(file) = &self.current {
            fsync(file).map_err(|e| self.error("current", "cannot sync it", e))?;
            fchmod(file, Mode::from_bits_truncate(FINISHED))
                .map_err(|e| self.error("current", "cannot set its mode", e))?;
        }
        let name = self.free_name(now, false)?;
        nix::fcntl::renameat(&self.dir, "current", &self.dir, &name[..])
            .map_err(|e| self.error("current", "cannot rotate it", e))?;
        self.notices.push(Notice::Rotated(name, self.size));
        self.current = None;
        self.size = 0;
        self.rotate_due = false;
        self.delete_over_limit(Some(&name));
        self.open_current()
    }

    /// A rotated file's name for `now` (or a nanosecond after the last
    /// one's) that no file has yet: later by a nanosecond while one has.
    fn free_name(&mut self, now: SystemTime, unfinished: bool) -> Result<[u8; ROTATED_LEN], LogDirError> {
        let mut time = match self.last_named {
            Some(last) if last >= now => last + Duration::from_nanos(1),
            _ => now,
        };
        loop {
            let name = stamp::rotated_name(time, unfinished);
            match fstatat(&self.dir, &name[..], AtFlags::AT_SYMLINK_NOFOLLOW) {
                Err(Errno::ENOENT) => {
                    self.last_named = Some(time);
                    return Ok(name);
                }
                Ok(_) => time += Duration::from_nanos(1),
                Err(e) => return Err(self.error("", "cannot look for a free name", e)),
            }
        }
    }

    /// The rotated files in the directory; None (after a notice) when it
    /// cannot be read.
    fn census(&mut self, keep: Option<&[u8]>) -> Option<rotation::Census> {
        let listed = Dir::openat(
            &self.dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let mut dir = match listed {
            Ok(dir) => dir,
            Err(e) => {
                self.notices.push(Notice::ListFailed(e));
                return None;
            }
        };
        let mut census = rotation::Census::default();
        for entry in dir.iter().filter_map(Result::ok) {
            census.add(entry.file_name().to_bytes(), keep);
        }
        Some(census)
    }

    /// After a rotation: deletes the oldest rotated file when there are
    /// more than `n`.
    fn delete_over_limit(&mut self, keep: Option<&[u8]>) {
        let Some(census) = self.census(keep) else { return };
        if let Some(oldest) = census.over_limit(self.config.max_files) {
            match unlinkat(&self.dir, &oldest[..], UnlinkatFlags::NoRemoveDir) {
                Ok(()) => self.notices.push(Notice::Deleted(oldest)),
                Err(e) => self.notices.push(Notice::DeleteFailed(oldest, e)),
            }
        }
    }

    /// On a full disk: deletes the oldest rotated file when there are more
    /// than `N` (and `N` is below `n`). Whether one was deleted.
    fn delete_for_space(&mut self) -> bool {
        let Some(census) = self.census(None) else { return false };
        let Some(oldest) = census.to_free_space(self.config.min_files, self.config.max_files) else {
            return false;
        };
        match unlinkat(&self.dir, &oldest[..], UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {
                self.notices.push(Notice::DiskFullDeleted(oldest));
                true
            }
            Err(e) => {
                self.notices.push(Notice::DeleteFailed(oldest, e));
                false
            }
        }
    }

    /// At close: `current` durable and marked finished (0744).
    fn finish_current(&mut self) -> Result<(), LogDirError> {
        if let Some(file) = &self.current {
            fsync(file).map_err(|e| self.error("current", "cannot sync it", e))?;
            fchmod(file, Mode::from_bits_truncate(FINISHED))
                .map_err(|e| self.error("current", "cannot set its mode", e))?;
        }
        Ok(())
    }
}

/// Opens `name` in `dir` with `flags`, close-on-exec and non-blocking (a
/// FIFO put there must not hang the open), created 0600 as runit does.
fn open_in(dir: &OwnedFd, name: &str, flags: OFlag) -> Result<File, Errno> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// `config` over `defaults`; missing: the defaults; unreadable: the
/// defaults, with a warning.
fn read_config(dir: &OwnedFd, defaults: &Config, notices: &mut Vec<Notice>) -> Config {
    let mut text = Vec::new();
    let read = open_in(dir, "config", OFlag::O_RDONLY)
        .and_then(|file| file.take(CONFIG_MAX).read_to_end(&mut text).map_err(|e| errno_of(&e)));
    match read {
        Ok(_) => {}
        Err(Errno::ENOENT) => return defaults.clone(),
        Err(e) => {
            notices.push(Notice::ConfigUnreadable(e));
            return defaults.clone();
        }
    }
    notices.push(Notice::ReadConfig);
    let (config, problems) = config::parse(&text, defaults);
    notices.extend(problems.into_iter().map(Notice::Config));
    config
}

fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::UNIX_EPOCH;

    fn settings() -> Settings {
        Settings {
            timestamp: None,
            line_max: 20,
            defaults: Config::default(),
            read_config: true,
            buffer: 64,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The rotated files' contents, oldest first, then `current`'s.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('@'))
            .collect();
        names.sort();
        names.push("current".into());
        names.iter().map(|n| fs::read_to_string(dir.join(n)).unwrap()).collect()
    }

    #[test]
    fn lines_land_in_current_with_runits_modes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        assert_eq!(log.take_notices(), [Notice::New]);
        assert_eq!(mode(&dir.path().join("current")), 0o644);
        assert_eq!(mode(&dir.path().join("lock")), 0o600);
        log.write_line(b"one", at(0)).unwrap();
        log.write_line(b"", at(0)).unwrap();
        log.write_line(b"three", at(0)).unwrap();
        log.flush(at(0)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("current")).unwrap(),
            "one\n\nthree\n"
        );
        log.close(at(0)).unwrap();
        assert_eq!(mode(&dir.path().join("current")), 0o744);
        // A clean close: the next open appends.
        let mut log = LogDir::open(dir.path(), &settings(), at(1)).unwrap();
        assert_eq!(log.take_notices(), [Notice::Append]);
        log.write_line(b"four", at(1)).unwrap();
        log.close(at(1)).unwrap();
        assert_eq!(files(dir.path()), ["one\n\nthree\nfour\n"]);
    }

    #[test]
    fn a_second_writer_cannot_lock_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        let second = LogDir::open(dir.path(), &settings(), at(0)).unwrap_err();
        assert_eq!(second.errno, Errno::EWOULDBLOCK);
        assert!(
            second
                .to_string()
                .starts_with(&format!("{}: cannot lock it", dir.path().display()))
        );
    }

    #[test]
    fn a_missing_or_unusable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = LogDir::open(&missing, &settings(), at(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot open the log directory: No such file or directory",
                missing.display()
            )
        );
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert_eq!(
            LogDir::open(&file, &settings(), at(0)).unwrap_err().errno,
            Errno::ENOTDIR
        );
        // `current` a directory: it cannot be opened for writing.
        fs::create_dir(dir.path().join("current")).unwrap();
        let e = LogDir::open(dir.path(), &settings(), at(0)).unwrap_err();
        assert_eq!((e.path, e.what), (dir.path().join("current"), "cannot open it"));
    }

    #[test]
    fn size_rotation_keeps_n_files_and_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "s100\nn3\n").unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        for i in 1..=40 {
            log.write_line(format!("line number {i:02} here").as_bytes(), at(i))
                .unwrap();
        }
        log.close(at(41)).unwrap();
        let files = files(dir.path());
        // 20 bytes a line; rotated after the 4th line of a file (80 ≥ 100-20).
        assert_eq!(files.len(), 4, "{files:?}");
        assert_eq!(
            files[0],
            (29..=32).map(|i| format!("line number {i} here\n")).collect::<String>()
        );
        assert_eq!(
            files[2],
            (37..=40).map(|i| format!("line number {i} here\n")).collect::<String>()
        );
        assert_eq!(files[3], "");
        for entry in fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with('@') {
                assert_eq!(mode(&entry.path()), 0o744);
                assert!(entry.file_name().to_string_lossy().ends_with(".s"));
            }
        }
    }

    #[test]
    fn rotations_that_share_a_clock_reading_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "s10\nn2\n").unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        for line in ["aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd", "eeeeeeee"] {
            log.write_line(line.as_bytes(), at(5)).unwrap();
        }
        log.close(at(5)).unwrap();
        // The oldest deleted each time, never a name reused for a newer file.
        assert_eq!(files(dir.path()), ["cccccccc\n", "dddddddd\n", "eeeeeeee\n"]);
    }

    #[test]
    fn a_line_that_would_not_fit_starts_the_next_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "s30\nn0\n").unwrap();
        let short = Settings {
            line_max: 5,
            ..settings()
        };
        let mut log = LogDir::open(dir.path(), &short, at(0)).unwrap();
        log.write_line(b"0123456789", at(0)).unwrap(); // 11 bytes
        log.write_line(b"0123456789abcdefghij", at(1)).unwrap(); // 21: over 30
        log.write_line(b"x", at(2)).unwrap();
        log.close(at(3)).unwrap();
        assert_eq!(files(dir.path()), ["0123456789\n", "0123456789abcdefghij\nx\n"]);
    }

    #[test]
    fn a_line_in_pieces_stays_whole_unless_longer_than_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "s40\nn0\n-drop*\n").unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        log.write(b"keep", Piece::First, at(0)).unwrap();
        log.write(b" this", Piece::Middle, at(0)).unwrap();
        log.write(b" line", Piece::Last, at(0)).unwrap();
        assert!(!log.write(b"drop", Piece::First, at(0)).unwrap().selected);
        log.write(b" all of it", Piece::Last, at(0)).unwrap();
        // 70 bytes in pieces: a new file, cut where it is full.
        log.write(&[b'a'; 45], Piece::First, at(1)).unwrap();
        log.write(&[b'b'; 25], Piece::Last, at(1)).unwrap();
        log.close(at(2)).unwrap();
        let a = "a".repeat(45);
        let b = "b".repeat(25);
        assert_eq!(
            files(dir.path()),
            ["keep this line\n".to_owned(), a, format!("{b}\n"), String::new()]
        );
    }

    #[test]
    fn patterns_prefix_and_timestamps_shape_each_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "-*\n+error*\ne*fatal*\npapp: \n").unwrap();
        let mut with_stamps = settings();
        with_stamps.timestamp = Some(Timestamp::Readable);
        let mut log = LogDir::open(dir.path(), &with_stamps, UNIX_EPOCH).unwrap();
        assert!(!log.write_line(b"info: hello", UNIX_EPOCH).unwrap().selected);
        let fatal = log.write_line(b"error: fatal", UNIX_EPOCH).unwrap();
        assert_eq!((fatal.selected, fatal.alert), (true, true));
        // Only the first -l (20) bytes are matched.
        assert!(
            !log.write_line(b"info: 12345678901234 error", UNIX_EPOCH)
                .unwrap()
                .selected
        );
        log.close(UNIX_EPOCH).unwrap();
        assert_eq!(files(dir.path()), ["1970-01-01_00:00:00.00000 app: error: fatal\n"]);
    }

    #[test]
    fn an_unfinished_current_is_kept_as_a_u_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("current"), "half a run\n").unwrap();
        fs::set_permissions(dir.path().join("current"), fs::Permissions::from_mode(0o644)).unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        let name = stamp::rotated_name(at(0), true);
        assert_eq!(log.take_notices(), [Notice::Unfinished(name), Notice::New]);
        log.close(at(0)).unwrap();
        let kept = dir.path().join(String::from_utf8_lossy(&name).as_ref());
        assert_eq!(fs::read_to_string(kept).unwrap(), "half a run\n");
        assert_eq!(fs::read_to_string(dir.path().join("current")).unwrap(), "");
    }

    #[test]
    fn age_rotation_comes_at_the_deadline_and_skips_an_empty_current() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config"), "t60\n").unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        assert_eq!(log.deadline(), Some(at(60)));
        log.write_line(b"a", at(10)).unwrap();
        log.tick(at(59)).unwrap();
        assert_eq!(files(dir.path()).len(), 1);
        log.tick(at(60)).unwrap();
        assert_eq!(files(dir.path()), ["a\n", ""]);
        assert_eq!(log.deadline(), Some(at(120)));
        log.tick(at(120)).unwrap();
        assert_eq!(files(dir.path()).len(), 2, "an empty current is not rotated");
        assert_eq!(log.deadline(), Some(at(180)));
        log.write_line(b"b", at(121)).unwrap();
        log.rotate(at(122)).unwrap();
        assert_eq!(files(dir.path()), ["a\n", "b\n", ""]);
        log.close(at(123)).unwrap();
    }

    #[test]
    fn reopen_reads_the_config_again_and_reports_its_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        assert_eq!(log.config().max_size, 1_000_000);
        fs::write(dir.path().join("config"), "s500\nbogus\n").unwrap();
        let mut log = log.reopen(&settings(), at(1)).unwrap();
        assert_eq!(log.config().max_size, 500);
        let notices = log.take_notices();
        let shown: Vec<String> = notices
            .iter()
            .map(|n| n.in_dir(Path::new("main")).to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "read: main/config",
                "main/config: line 2: unknown setting \"bogus\": ignored",
                "append: main/current"
            ]
        );
        assert!(notices[1].is_warning() && !notices[0].is_warning());
    }

    #[test]
    fn the_buffer_is_written_when_full_and_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogDir::open(dir.path(), &settings(), at(0)).unwrap();
        let current = dir.path().join("current");
        log.write_line(&[b'x'; 40], at(0)).unwrap();
        assert_eq!(fs::metadata(&current).unwrap().len(), 0, "buffered");
        log.write_line(&[b'y'; 40], at(0)).unwrap();
        assert_eq!(
            fs::metadata(&current).unwrap().len(),
            41,
            "the first line, to make room"
        );
        log.flush(at(0)).unwrap();
        assert_eq!(fs::metadata(&current).unwrap().len(), 82);
    }
}
