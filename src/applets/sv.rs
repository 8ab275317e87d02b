//! `sv`: runit's service control command, speaking runit's supervise/ protocol.
//!
//! It follows runit 2.1.2's sv (as Debian ships it) line for line where the
//! output or the exit status can tell: the same words, the same order, the
//! same errno texts, the same 420 ms polling of the waiting commands. A
//! supervisor is running when `supervise/ok` opens for writing without
//! blocking (ENXIO: no reader, so none); commands go to the
//! `supervise/control` FIFO one character each; the state is read from the
//! 20-byte `supervise/status`. The record's layout and the control letters
//! are [`crate::runit`]'s, the same the supervisor writes and reads.
//!
//! baseinit's addition: when a service directory has no `supervise`, the
//! state is looked up in `${BASEINIT_RUNTIME_DIR:-/run/baseinit}/supervise/NAME`
//! (`NAME/log` for its log service), then, for a user other than root, in
//! `$TMPDIR/baseinit-UID/supervise/NAME`: where baseinit keeps it when the
//! service directory is read-only.

mod args;
pub(super) mod errstr;
pub mod status;

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::unistd::{AccessFlags, Pid};

use crate::runit::{self, RunState, control, status::RECORD_LEN, status::Record};
use args::{Act, Command, Options, USAGE_EXIT};
use errstr::error_str;

/// runit's default services directory.
const DEFAULT_SVDIR: &str = "/etc/service/";
/// Where baseinit keeps `supervise/` state it cannot keep in the service
/// directory, unless `$BASEINIT_RUNTIME_DIR` says otherwise.
const DEFAULT_RUNTIME_DIR: &str = "/run/baseinit";
/// runit's pause between two looks at the services being waited for.
const POLL: Duration = Duration::from_millis(420);
/// The most sv counts as failures in its exit status.
const MAX_EXIT: u32 = 99;

/// Whether `word` is a command `sv` takes (for the man page's list).
pub fn decodes(word: &[u8]) -> bool {
    Command::decode(word, false).is_some()
}

/// Runs `sv` with `args` (args[0] is the program name); returns its exit status.
pub fn main(args: &[OsString]) -> i32 {
    let options = match args::parse(args, std::env::var_os("SVWAIT").as_deref()) {
        Ok(options) => options,
        Err(usage) => {
            eprint!("{}", usage.text(&args::progname(args)));
            return USAGE_EXIT;
        }
    };
    let svdir = std::env::var_os("SVDIR").unwrap_or_else(|| DEFAULT_SVDIR.into());
    let runtime = std::env::var_os("BASEINIT_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| DEFAULT_RUNTIME_DIR.into());
    Sv::new(options, PathBuf::from(svdir), absolute(PathBuf::from(runtime))).run()
}

/// The exit status for `failures` failed services.
fn exit_status(failures: u32) -> i32 {
    failures.min(MAX_EXIT) as i32
}

/// Makes `path` independent of the working directory, so that it means the
/// same when a check script runs elsewhere.
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir().map(|cwd| cwd.join(&path)).unwrap_or(path)
}

/// Where a service argument points. runit's rule (sv(8)): a name that does
/// not start with `.` or `/` and does not end with `/` is in `$SVDIR`
/// (`sv up web/log` is `$SVDIR/web/log`); anything else is a path.
fn service_dir(svdir: &Path, arg: &OsStr) -> Result<PathBuf, Errno> {
    let bytes = arg.as_bytes();
    let is_path = bytes.is_empty() || bytes[0] == b'/' || bytes[0] == b'.' || bytes.last() == Some(&b'/');
    if is_path {
        Ok(PathBuf::from(arg))
    } else if svdir.as_os_str().is_empty() {
        // runit's chdir("") fails so.
        Err(Errno::ENOENT)
    } else {
        Ok(svdir.join(arg))
    }
}

/// Fails as runit's chdir into `dir` would, without changing directory.
fn enter(dir: &Path) -> Result<(), Errno> {
    let meta = fs::metadata(dir).map_err(|e| errno_of(&e))?;
    if !meta.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    nix::unistd::access(dir, AccessFlags::X_OK)
}

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// The name baseinit files a service's runtime state under: the service
/// directory's own name, or `PARENT/log` for a log service.
fn runtime_name(dir: &Path) -> Option<PathBuf> {
    fn name_of(path: &Path) -> Option<OsString> {
        match path.file_name() {
            Some(name) => Some(name.to_owned()),
            // `.`, `..`, `/`: only the real path has a name.
            None => path.canonicalize().ok()?.file_name().map(OsStr::to_owned),
        }
    }
    let own = name_of(dir)?;
    if own != "log" {
        return Some(PathBuf::from(own));
    }
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && dir.file_name().is_some() => parent.to_path_buf(),
        _ => dir.join(".."),
    };
    Some(PathBuf::from(name_of(&parent)?).join("log"))
}

/// The `supervise` directory of the service in `dir`: its own, or else
/// baseinit's runtime copy. A `supervise` entry that exists in any form (even
/// a dangling symlink) is used, so errors read as runit's would.
fn supervise_dir(dir: &Path, runtime: &Path, name: Option<&Path>) -> PathBuf {
    let own = dir.join("supervise");
    if fs::symlink_metadata(&own).is_ok() {
        return own;
    }
    let Some(name) = name else { return own };
    // The runtime directory, then a non-root baseinit's own (see
    // `control_socket::user_dir`).
    let own_runtime = crate::control_socket::user_dir();
    [Some(runtime), own_runtime.as_deref()]
        .into_iter()
        .flatten()
        .map(|runtime| runtime.join("supervise").join(name))
        .find(|kept| fs::symlink_metadata(kept).is_ok())
        .unwrap_or(own)
}

/// A service named on the command line.
struct Target {
    /// As given: sv prints it so.
    arg: OsString,
    dir: PathBuf,
}

impl Target {
    /// The directory of the service itself, or of its log service.
    fn dir(&self, log: bool) -> PathBuf {
        if log { self.dir.join("log") } else { self.dir.clone() }
    }
}

/// What the waiting test found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// The command took effect (`ok:` printed).
    Done,
    /// Not yet.
    Waiting,
    /// Give up on this service (reported).
    Failed,
}

/// What reading a status found.
enum Got {
    Status(Record),
    /// No supervisor runs (reported already).
    NotRunning,
    /// An error (reported already).
    Failed,
}

/// One sv run: its options, its output buffer and its failure count.
struct Sv {
    command: Command,
    wait: Duration,
    services: Vec<OsString>,
    svdir: PathBuf,
    runtime: PathBuf,
    /// Standard output, written out where runit flushes.
    out: Vec<u8>,
    /// Failures so far: the exit status.
    failures: u32,
    started: Instant,
    /// TAI64 seconds at the start and now, as runit compares them.
    tai_start: u64,
    tai_now: u64,
    /// The service directories with no `supervise/` anywhere, which the
    /// running baseinit answers for over its control socket.
    over_socket: Vec<PathBuf>,
}

impl Sv {
    fn new(options: Options, svdir: PathBuf, runtime: PathBuf) -> Sv {
        let now = status::tai_now();
        Sv {
            command: options.command,
            wait: Duration::from_secs(options.wait),
            services: options.services,
            svdir,
            runtime,
            out: Vec::new(),
            failures: 0,
            started: Instant::now(),
            tai_start: now,
            tai_now: now,
            over_socket: Vec::new(),
        }
    }

    fn run(mut self) -> i32 {
        let mut pending = Vec::new();
        for arg in std::mem::take(&mut self.services) {
            let Some(target) = self.enter(arg) else { continue };
            let keep = match self.command.act {
                Act::Control(commands) => self.control(&target, commands),
                Act::Status => {
                    self.status(&target);
                    true
                }
                Act::Check => true,
            };
            if keep {
                pending.push(target);
            }
        }
        if self.command.wait {
            self.wait_for(pending);
        }
        self.flush();
        exit_status(self.failures)
    }

    /// runit's waiting loop: look at every pending service, report those
    /// done, report a timeout for those still pending once the wait is over,
    /// sleep, repeat.
    fn wait_for(&mut self, mut pending: Vec<Target>) {
        while !pending.is_empty() {
            let elapsed = self.started.elapsed();
            let mut still = Vec::new();
            for target in pending {
                // runit enters the directory again each time round.
                if let Err(errno) = enter(&target.dir) {
                    self.cannot_enter(&target.arg, errno);
                    continue;
                }
                if self.check(&target) != Check::Waiting {
                    continue;
                }
                if elapsed > self.wait {
                    self.out
                        .extend_from_slice(if self.command.kill { b"kill: " } else { b"timeout: " });
                    if let Got::Status(status) = self.get(&target, false) {
                        self.print(&target, &status, false);
                        self.failures += 1;
                    }
                    self.out.push(b'\n');
                    self.flush();
                    if self.command.kill {
                        self.control(&target, &[runit::Command::Signal(nix::sys::signal::Signal::SIGKILL)]);
                    }
                    continue;
                }
                still.push(target);
            }
            pending = still;
            if !pending.is_empty() {
                std::thread::sleep(POLL);
                self.tai_now = status::tai_now();
            }
        }
    }

    /// Resolves and enters a service argument; reports a failure and gives
    /// None when that is impossible.
    fn enter(&mut self, arg: OsString) -> Option<Target> {
        let entered = service_dir(&self.svdir, &arg).and_then(|dir| enter(&dir).map(|()| dir));
        match entered {
            Ok(dir) => Some(Target { arg, dir }),
            Err(errno) => {
                self.cannot_enter(&arg, errno);
                None
            }
        }
    }

    fn cannot_enter(&mut self, arg: &OsStr, errno: Errno) {
        self.failures += 1;
        self.line(
            b"fail: ",
            arg,
            false,
            "unable to change to service directory",
            Some(errno),
        );
    }

    /// runit's `out()`: `PREFIX: NAME[/log]: MESSAGE[: ERROR]`, flushed.
    fn line(&mut self, prefix: &[u8], arg: &OsStr, log: bool, message: &str, errno: Option<Errno>) {
        self.out.extend_from_slice(prefix);
        self.out.extend_from_slice(arg.as_bytes());
        if log {
            self.out.extend_from_slice(b"/log");
        }
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(message.as_bytes());
        if let Some(errno) = errno {
            self.out.extend_from_slice(b": ");
            self.out.extend_from_slice(error_str(errno as i32).as_bytes());
        }
        self.out.push(b'\n');
        self.flush();
    }

    fn warn(&mut self, target: &Target, log: bool, message: &str, errno: Option<Errno>) {
        self.failures += 1;
        self.line(b"warning: ", &target.arg, log, message, errno);
    }

    fn flush(&mut self) {
        let mut stdout = io::stdout().lock();
        // Like runit, sv has nothing better to do when stdout is gone.
        let _ = stdout.write_all(&self.out);
        let _ = stdout.flush();
        self.out.clear();
    }

    /// Reports that no supervisor runs: fine for `exit`, a failure otherwise.
    fn not_running(&mut self, target: &Target, log: bool) {
        if self.command.exits() {
            self.line(b"ok: ", &target.arg, log, "runsv not running", None);
        } else {
            self.failures += 1;
            self.line(b"fail: ", &target.arg, log, "runsv not running", None);
        }
    }

    /// runit's `svstatus_get()`: is a supervisor there, and what does it say.
    fn get(&mut self, target: &Target, log: bool) -> Got {
        let dir = target.dir(log);
        let name = runtime_name(&target.dir).map(|name| if log { name.join("log") } else { name });
        let supervise = supervise_dir(&dir, &self.runtime, name.as_deref());
        match open_fifo(&supervise.join("ok")) {
            Ok(_) => {}
            Err(Errno::ENXIO) => {
                self.not_running(target, log);
                return Got::NotRunning;
            }
            // No `supervise/` anywhere: nothing could be written (a
            // read-only root), but the running baseinit may know it.
            Err(Errno::ENOENT)
                if let Some(asked) = name.as_deref().and_then(|name| self.over_socket(&dir, name, &[])) =>
            {
                return match asked.map(|record| status::parse(&record)) {
                    Ok(Some(status)) => Got::Status(status),
                    Ok(None) => {
                        self.warn(target, log, "unable to read the status from baseinit: bad format", None);
                        Got::Failed
                    }
                    Err(message) => {
                        self.warn(target, log, &format!("unable to ask baseinit: {message}"), None);
                        Got::Failed
                    }
                };
            }
            Err(errno) => {
                self.warn(target, log, "unable to open supervise/ok", Some(errno));
                return Got::Failed;
            }
        }
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(supervise.join("status"))
        {
            Ok(file) => file,
            Err(e) => {
                self.warn(target, log, "unable to open supervise/status", Some(errno_of(&e)));
                return Got::Failed;
            }
        };
        let mut record = [0u8; RECORD_LEN];
        let mut got = 0;
        while got < record.len() {
            match file.read(&mut record[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.warn(target, log, "unable to read supervise/status", Some(errno_of(&e)));
                    return Got::Failed;
                }
            }
        }
        match status::parse(&record[..got]) {
            Some(status) => Got::Status(status),
            None => {
                self.warn(target, log, "unable to read supervise/status: bad format", None);
                Got::Failed
            }
        }
    }

    /// runit's `svstatus_print()`: appends the status text (nothing if the
    /// `down` file cannot be looked at).
    fn print(&mut self, target: &Target, status: &Record, log: bool) {
        let normally_up = match fs::metadata(target.dir(log).join("down")) {
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => {
                eprintln!(
                    "warning: unable to stat {}/down: {}",
                    target.arg.to_string_lossy(),
                    error_str(errno_of(&e) as i32)
                );
                return;
            }
        };
        let label: &[u8] = if log { b"log" } else { target.arg.as_bytes() };
        self.out
            .extend_from_slice(&status::format(status, label, self.tai_now, normally_up));
    }

    /// `sv status`: the service's status, then its log service's after `; `.
    fn status(&mut self, target: &Target) {
        let Got::Status(status) = self.get(target, false) else {
            return;
        };
        self.print(target, &status, false);
        match enter(&target.dir(true)) {
            Err(Errno::ENOENT) => self.out.push(b'\n'),
            Err(errno) => {
                self.out.extend_from_slice(b"; ");
                self.warn(target, true, "unable to change directory", Some(errno));
            }
            Ok(()) => {
                self.out.extend_from_slice(b"; ");
                // runit prints the main service's record again, labelled
                // `log`, after a warning about the log's supervise files;
                // baseinit prints only the warning.
                if let Got::Status(log) = self.get(target, true) {
                    self.print(target, &log, true);
                    self.out.push(b'\n');
                }
            }
        }
        self.flush();
    }

    /// runit's `control()`: sends `commands` unless the supervisor already
    /// wants that; false on failure (reported).
    fn control(&mut self, target: &Target, commands: &[runit::Command]) -> bool {
        let Got::Status(status) = self.get(target, false) else {
            return false;
        };
        // Every command sv sends has a letter (args.rs's tests).
        let letters: Vec<u8> = commands.iter().filter_map(|command| command.letter()).collect();
        let first = letters.first().copied().unwrap_or(0);
        // The want byte is the letter of `up` or `down`; `down` is sent again
        // after `once` (want down, but no TERM yet).
        if status.want == first && (first != control::DOWN || status.got_term == 1) {
            return true;
        }
        let name = runtime_name(&target.dir);
        if self.over_socket.contains(&target.dir) {
            if let Some(Ok(_)) = name
                .as_deref()
                .and_then(|name| self.over_socket(&target.dir, name, &letters))
            {
                return true;
            }
            self.warn(target, false, "unable to send the command to baseinit", None);
            return false;
        }
        let supervise = supervise_dir(&target.dir, &self.runtime, name.as_deref());
        let mut fifo = match open_fifo(&supervise.join("control")) {
            Ok(fifo) => fifo,
            Err(Errno::ENXIO) => {
                self.not_running(target, false);
                return false;
            }
            Err(errno) => {
                self.warn(target, false, "unable to open supervise/control", Some(errno));
                return false;
            }
        };
        match fifo.write(&letters) {
            Ok(n) if n == letters.len() => true,
            Ok(_) => {
                self.warn(target, false, "unable to write to supervise/control", None);
                false
            }
            Err(e) => {
                self.warn(
                    target,
                    false,
                    "unable to write to supervise/control",
                    Some(errno_of(&e)),
                );
                false
            }
        }
    }

    /// Sends `letters` (none: only asks) for the service in `dir`, known to
    /// baseinit as `name`, over the control socket: its status record (and
    /// `dir` remembered as answered that way), or why baseinit refused.
    /// None when no baseinit answers, or it has no such service.
    fn over_socket(&mut self, dir: &Path, name: &Path, letters: &[u8]) -> Option<Result<[u8; RECORD_LEN], String>> {
        match crate::control_socket::sv(&self.runtime, name.to_str()?, letters) {
            Ok(Some(record)) => {
                if !self.over_socket.iter().any(|d| d == dir) {
                    self.over_socket.push(dir.to_owned());
                }
                Some(Ok(record))
            }
            Err(message) if message.starts_with("permission denied") => Some(Err(message)),
            Ok(None) | Err(_) => None,
        }
    }

    /// runit's `check()`: has every command sent taken effect?
    fn check(&mut self, target: &Target) -> Check {
        let status = match self.get(target, false) {
            Got::Status(status) => status,
            // For `exit` that is the goal (and `ok:` is printed already).
            Got::NotRunning if self.command.exits() => return Check::Done,
            Got::NotRunning | Got::Failed => return Check::Failed,
        };
        let done = match self.command.act {
            // In order, and no further than the first not done: a check
            // script runs for some.
            Act::Control(commands) => commands
                .iter()
                .all(|&command| self.took_effect(target, &status, command)),
            // `check`: down, or up and ready.
            Act::Check => status.pid == 0 || self.check_script(target),
            Act::Status => true,
        };
        if !done {
            return Check::Waiting;
        }
        self.out.extend_from_slice(b"ok: ");
        self.print(target, &status, false);
        self.out.push(b'\n');
        self.flush();
        Check::Done
    }

    /// runit's test of one command against the status read.
    fn took_effect(&mut self, target: &Target, status: &Record, command: runit::Command) -> bool {
        use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
        let running = status.pid != 0;
        match command {
            // `exit` is done only when the supervisor is gone (check()).
            runit::Command::Exit => false,
            runit::Command::Up => running && status.run_state() == Some(RunState::Run) && self.check_script(target),
            runit::Command::Down => !running && status.run_state() == Some(RunState::Down),
            // Restarted since we started (or down on purpose), no TERM
            // pending, and the check script agrees.
            runit::Command::Signal(SIGTERM | SIGKILL) => {
                (!running && status.want == control::DOWN)
                    || (self.tai_start <= status.since && running && status.got_term == 0 && self.check_script(target))
            }
            runit::Command::Once => {
                !((!running && self.tai_start > status.since) || (running && status.want != control::DOWN))
            }
            runit::Command::Pause => !running || status.paused != 0,
            runit::Command::Continue => !running || status.paused == 0,
            runit::Command::Signal(_) => true,
        }
    }

    /// Runs the service's `check` script, if it has one: ready if it exits 0.
    /// As in runit, a `check` that cannot be executed warns and counts as
    /// ready; unlike runit, one killed by a signal counts as not ready, and
    /// one still running when the wait is over is killed.
    fn check_script(&mut self, target: &Target) -> bool {
        let name = target.arg.to_string_lossy().into_owned();
        match fs::metadata(target.dir.join("check")) {
            Ok(_) => {}
            // No script: the running baseinit's own readiness (notification
            // fd, sd_notify, a TCP port…), when one answers; else runit's
            // rule: running is ready.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return baseinit_ready(&target.dir).unwrap_or(true),
            Err(e) => {
                eprintln!(
                    "warning: unable to stat {name}/check: {}",
                    error_str(errno_of(&e) as i32)
                );
                return false;
            }
        }
        // Resolved after the chdir into the service directory, as runit's
        // execve("check") is; runit closes stdout, /dev/null is kinder.
        let spawned = std::process::Command::new("./check")
            .current_dir(&target.dir)
            .stdin(Stdio::inherit())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match spawned {
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => {
                eprintln!(
                    "warning: unable to run {name}/check: {}",
                    error_str(errno_of(&e) as i32)
                );
                return true;
            }
        };
        // None: a wait too long to represent, so no deadline either.
        let deadline = self
            .started
            .checked_add(self.wait.saturating_add(Duration::from_secs(1)));
        // waitpid on this one pid (never std's waiting APIs, as everywhere in
        // the crate): sv is a short-lived process of its own, not the
        // supervisor, and this child is its only one.
        loop {
            match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return code == 0,
                Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(Errno::EINTR)
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) =>
                {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return false;
                }
                Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(Errno::EINTR) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                // Killed by a signal (or any other end): not ready.
                Ok(_) => return false,
                Err(e) => {
                    eprintln!("warning: unable to wait for child {name}/check: {e}");
                    return false;
                }
            }
        }
    }
}

/// Opens a supervise FIFO for writing without waiting for a reader: ENXIO
/// means no supervisor holds it open.
fn open_fifo(path: &Path) -> Result<fs::File, Errno> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| errno_of(&e))
}

/// Whether the running baseinit (if one answers, and knows this service)
/// says the service in `dir` is ready.
fn baseinit_ready(dir: &Path) -> Option<bool> {
    let runtime =
        std::env::var_os("BASEINIT_RUNTIME_DIR").map_or_else(|| PathBuf::from("/run/baseinit"), PathBuf::from);
    let name = dir.file_name()?.to_str()?;
    let snapshot = crate::status::ask(&runtime).ok()?;
    snapshot.services.iter().find(|s| s.name == name).map(|s| s.ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_a_leading_dot_or_slash_or_trailing_slash_are_in_svdir() {
        let svdir = Path::new("/etc/service");
        let dir = |arg: &str| service_dir(svdir, OsStr::new(arg)).unwrap();
        assert_eq!(dir("web"), Path::new("/etc/service/web"));
        assert_eq!(dir("web/log"), Path::new("/etc/service/web/log"));
        assert_eq!(dir("/srv/web"), Path::new("/srv/web"));
        assert_eq!(dir("./web"), Path::new("./web"));
        assert_eq!(dir(".web"), Path::new(".web"));
        assert_eq!(dir("web/"), Path::new("web/"));
        assert_eq!(dir(""), Path::new(""));
        assert_eq!(service_dir(Path::new(""), OsStr::new("web")), Err(Errno::ENOENT));
    }

    #[test]
    fn entering_fails_as_chdir_would() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert_eq!(enter(tmp.path()), Ok(()));
        assert_eq!(enter(&tmp.path().join("missing")), Err(Errno::ENOENT));
        assert_eq!(enter(&file), Err(Errno::ENOTDIR));
        assert_eq!(enter(&file.join("x")), Err(Errno::ENOTDIR));
    }

    #[test]
    fn runtime_names_are_the_directory_name_or_parent_slash_log() {
        assert_eq!(runtime_name(Path::new("/etc/service/web")), Some("web".into()));
        assert_eq!(runtime_name(Path::new("/etc/service/web/")), Some("web".into()));
        assert_eq!(runtime_name(Path::new("/etc/service/web/log")), Some("web/log".into()));
        let tmp = tempfile::tempdir().unwrap();
        let web = tmp.path().join("web");
        fs::create_dir_all(web.join("log")).unwrap();
        assert_eq!(runtime_name(&web.join(".")), Some("web".into()));
        assert_eq!(runtime_name(&web.join("log/..")), Some("web".into()));
        assert_eq!(runtime_name(&web.join("log/.")), Some("web/log".into()));
    }

    #[test]
    fn supervise_state_falls_back_to_the_runtime_dir_only_when_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let service = tmp.path().join("service/web");
        let runtime = tmp.path().join("run");
        fs::create_dir_all(&service).unwrap();
        let name = Path::new("web");
        // Neither exists: the service's own (so errors name supervise/…).
        assert_eq!(supervise_dir(&service, &runtime, Some(name)), service.join("supervise"));
        fs::create_dir_all(runtime.join("supervise/web")).unwrap();
        assert_eq!(
            supervise_dir(&service, &runtime, Some(name)),
            runtime.join("supervise/web")
        );
        // A dangling symlink is still the service's own.
        std::os::unix::fs::symlink("/nonexistent", service.join("supervise")).unwrap();
        assert_eq!(supervise_dir(&service, &runtime, Some(name)), service.join("supervise"));
    }

    #[test]
    fn the_exit_status_counts_failures_up_to_99() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(3), 3);
        assert_eq!(exit_status(99), 99);
        assert_eq!(exit_status(100), 99);
        assert_eq!(exit_status(u32::MAX), 99);
    }
}
