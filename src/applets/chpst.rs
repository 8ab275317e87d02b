//! `chpst`: runit's "change process state" (Debian's runit 2.1.2), and the
//! daemontools names it answers to by argv[0]: `envdir`, `envuidgid`,
//! `pgrphack`, `setlock`, `setuidgid`, `softlimit`.
//!
//! It changes this process, then execs the program in it: no fork, no wait.
//! The steps run in runit's order (setsid, envdir, chroot, nice, `-U`, `-u`,
//! lock, closing 0/1/2, limits), with runit's messages (`chpst: fatal: …`,
//! runit's errno words) and exit codes: 100 for a usage error, 111 for any
//! other failure, the program's own once it runs.
//!
//! Where it differs from runit, on purpose (docs/applets.md): users and
//! groups come from /etc/passwd and /etc/group only; `-u` to the ids the
//! process already has changes nothing; a dangling symlink in an envdir
//! unsets its variable; `setlock` waits for the lock unless `-n`, as
//! daemontools' (runit's chpst has the two swapped).

mod account;
mod args;
mod envdir;
mod exec;
mod limits;

use std::convert::Infallible;
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use account::{Files, Ids};
use args::{LockWait, Usage};
use envdir::Change;

/// The names baseinit answers to as chpst, by argv[0].
pub const NAMES: [&str; 7] = [
    "chpst",
    "envdir",
    "envuidgid",
    "pgrphack",
    "setlock",
    "setuidgid",
    "softlimit",
];

/// Whether `letter` is an option of chpst, and whether it takes an argument
/// (for the man page's test).
pub fn option(letter: u8) -> Option<bool> {
    args::option(letter)
}

/// runit's exit status for everything but a usage error.
pub const FATAL_EXIT: i32 = 111;

/// A failure: `chpst: fatal: MESSAGE` and exit 111 (runit's strerr_die;
/// runit says `chpst` under every name).
#[derive(Debug, PartialEq, Eq)]
pub struct Fatal(pub String);

impl Fatal {
    /// `WHAT: ERROR`, the error in runit's words.
    fn sys(what: impl Display, errno: Errno) -> Fatal {
        Fatal(format!("{what}: {}", error_str(errno)))
    }

    fn io(what: impl Display, error: &io::Error) -> Fatal {
        match error.raw_os_error() {
            Some(errno) => Fatal::sys(what, Errno::from_raw(errno)),
            None => Fatal(format!("{what}: {error}")),
        }
    }
}

/// runit's word for `errno` (`file does not exist`), as sv's.
fn error_str(errno: Errno) -> &'static str {
    super::sv::errstr::error_str(errno as i32)
}

/// How a run ended without exec'ing the program.
enum Ended {
    Usage(Usage),
    Fatal(Fatal),
    /// setlock -x: exit 0, silently.
    Quiet,
}

impl From<Usage> for Ended {
    fn from(usage: Usage) -> Self {
        Ended::Usage(usage)
    }
}

impl From<Fatal> for Ended {
    fn from(fatal: Fatal) -> Self {
        Ended::Fatal(fatal)
    }
}

/// Runs chpst, or the daemontools program argv[0] names, with `args`
/// (args[0] is the program name); returns its exit status when it did not
/// exec the program.
pub fn main(args: &[OsString]) -> i32 {
    let progname = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map_or_else(|| "chpst".into(), |n| n.to_string_lossy().into_owned());
    let Err(ended) = match progname.as_str() {
        "envdir" => envdir(args),
        "envuidgid" => envuidgid(args),
        "pgrphack" => pgrphack(args),
        "setlock" => setlock(args),
        "setuidgid" => setuidgid(args),
        "softlimit" => softlimit(args),
        _ => chpst(args),
    };
    match ended {
        Ended::Usage(usage) => {
            // The bytes as they are: an illegal option may be any byte.
            match String::from_utf8(usage.text(&progname)) {
                Ok(text) => eprint!("{text}"),
                Err(bytes) => drop(io::stderr().write_all(bytes.as_bytes())),
            }
            args::USAGE_EXIT
        }
        Ended::Fatal(Fatal(message)) => {
            eprintln!("chpst: fatal: {message}");
            FATAL_EXIT
        }
        Ended::Quiet => 0,
    }
}

fn chpst(args: &[OsString]) -> Result<Infallible, Ended> {
    let options = args::chpst(args)?;
    let mut changes = Vec::new();
    if options.pgrp {
        // As runit: a process group leader cannot, and that is no error.
        let _ = nix::unistd::setsid();
    }
    if let Some(dir) = &options.env_dir {
        let found = envdir::read(dir, true)?;
        if options.verbose {
            for warning in &found.warnings {
                eprintln!("chpst: warning: {warning}");
            }
        }
        changes.extend(found.changes);
    }
    if let Some(root) = &options.root {
        nix::unistd::chdir(root)
            .map_err(|e| Fatal::sys(format_args!("unable to change directory: {}", root.display()), e))?;
        nix::unistd::chroot(".").map_err(|e| Fatal::sys("unable to change root directory", e))?;
    }
    if options.nice != 0 {
        nice(options.nice)?;
    }
    if let Some(spec) = &options.env_user {
        let ids = account::extended(spec, &Files).map_err(|why| account::unknown(spec, true, why))?;
        changes.extend(uid_gid(&ids));
    }
    if let Some(spec) = &options.set_user {
        let ids = account::extended(spec, &Files).map_err(|why| account::unknown(spec, true, why))?;
        account::switch(&ids)?;
    }
    if let Some((file, wait)) = &options.lock {
        lock(file, *wait)?;
    }
    for (fd, name) in [(0, "stdin"), (1, "stdout"), (2, "stderr")] {
        if options.close[fd as usize] {
            close(fd, name)?;
        }
    }
    options.limits.apply()?;
    let mut argv = options.program.clone();
    if let (Some(argv0), Some(first)) = (&options.argv0, argv.first_mut()) {
        first.clone_from(argv0);
    }
    let file = options.program.first().map(OsString::as_os_str).unwrap_or_default();
    Err(run(file, &argv, &changes).into())
}

fn setuidgid(args: &[OsString]) -> Result<Infallible, Ended> {
    let (account, child) = args::one_then_child(args, args::USAGE_SETUIDGID)?;
    let spec = account.as_bytes();
    let ids = account::plain(spec, &Files).map_err(|why| account::unknown(spec, false, why))?;
    account::switch(&ids)?;
    Err(program(child, &[]).into())
}

fn envuidgid(args: &[OsString]) -> Result<Infallible, Ended> {
    let (account, child) = args::one_then_child(args, args::USAGE_ENVUIDGID)?;
    let spec = account.as_bytes();
    let ids = account::plain(spec, &Files).map_err(|why| account::unknown(spec, false, why))?;
    Err(program(child, &uid_gid(&ids)).into())
}

fn envdir(args: &[OsString]) -> Result<Infallible, Ended> {
    let (dir, child) = args::one_then_child(args, args::USAGE_ENVDIR)?;
    let found = envdir::read(Path::new(dir), false)?;
    Err(program(child, &found.changes).into())
}

fn pgrphack(args: &[OsString]) -> Result<Infallible, Ended> {
    let child = args::child(args)?;
    let _ = nix::unistd::setsid();
    Err(program(child, &[]).into())
}

fn setlock(args: &[OsString]) -> Result<Infallible, Ended> {
    let setlock = args::setlock(args)?;
    let locked = lock(Path::new(setlock.file), setlock.wait);
    if setlock.quiet && locked.is_err() {
        return Err(Ended::Quiet);
    }
    locked?;
    let failed = program(setlock.child, &[]);
    Err(if setlock.quiet { Ended::Quiet } else { failed.into() })
}

fn softlimit(args: &[OsString]) -> Result<Infallible, Ended> {
    let (limits, child) = args::softlimit(args)?;
    limits.apply()?;
    Err(program(child, &[]).into())
}

/// `GID` and `UID` from `ids`, in runit's order.
fn uid_gid(ids: &Ids) -> [Change; 2] {
    let gid = ids.gids.first().map_or(0, |g| g.as_raw());
    [
        envdir::change(b"GID", Some(gid.to_string().as_bytes())),
        envdir::change(b"UID", Some(ids.uid.to_string().as_bytes())),
    ]
}

/// Runs `child` (the program and its arguments) as it is.
fn program(child: &[OsString], changes: &[Change]) -> Fatal {
    let file = child.first().map(OsString::as_os_str).unwrap_or_default();
    run(file, child, changes)
}

/// Execs `file` with `argv` and the environment with `changes`; returns
/// why it could not.
fn run(file: &std::ffi::OsStr, argv: &[OsString], changes: &[Change]) -> Fatal {
    exec::default_sigpipe();
    let env = envdir::merge(envdir::current(), changes);
    let errno = exec::run(file, argv, &env);
    let name = argv.first().map(|a| a.to_string_lossy()).unwrap_or_default();
    Fatal::sys(format_args!("unable to run: {name}"), errno)
}

/// Takes an exclusive lock on `file` (created 0600 when missing) for the
/// program: the descriptor stays open, without close-on-exec, through the
/// exec, so the lock is held until the program ends.
fn lock(file: &Path, wait: LockWait) -> Result<(), Fatal> {
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_APPEND | OFlag::O_CREAT;
    let fd = nix::fcntl::open(file, flags, Mode::from_bits_truncate(0o600))
        .map_err(|e| Fatal::sys(format_args!("unable to open lock: {}", file.display()), e))?;
    let how = match wait {
        LockWait::Wait => FlockArg::LockExclusive,
        LockWait::NoWait => FlockArg::LockExclusiveNonblock,
    };
    let held =
        Flock::lock(fd, how).map_err(|(_, e)| Fatal::sys(format_args!("unable to lock: {}", file.display()), e))?;
    // Never unlocked by us: the program holds it.
    std::mem::forget(held);
    Ok(())
}

/// Adds `increment` to the nice value (nice(2), as runit).
fn nice(increment: i64) -> Result<(), Fatal> {
    Errno::clear();
    // SAFETY: nice(2) takes a number and touches no memory. The truncation
    // to int is C's, as runit passes its long.
    let rc = unsafe { nix::libc::nice(increment as i32) };
    // -1 is also a valid new nice value: only errno tells a failure.
    if rc == -1 && Errno::last_raw() != 0 {
        return Err(Fatal::sys("unable to set nice level", Errno::last()));
    }
    Ok(())
}

/// Closes standard descriptor `fd` (`-0`, `-1`, `-2`).
fn close(fd: i32, name: &str) -> Result<(), Fatal> {
    // SAFETY: closes a standard descriptor no Rust object owns; std's
    // stdio handles treat a closed one as a sink.
    if unsafe { nix::libc::close(fd) } == -1 {
        return Err(Fatal::sys(format_args!("unable to close {name}"), Errno::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn usage_errors_exit_100() {
        assert_eq!(main(&os(&["chpst"])), 100);
        assert_eq!(main(&os(&["chpst", "-C", "/", "true"])), 100);
        assert_eq!(main(&os(&["/bin/envdir", "dir"])), 100);
        assert_eq!(main(&os(&["setuidgid", "root"])), 100);
        assert_eq!(main(&os(&["envuidgid"])), 100);
        assert_eq!(main(&os(&["pgrphack"])), 100);
        assert_eq!(main(&os(&["setlock", "file"])), 100);
        assert_eq!(main(&os(&["softlimit", "-o", "many", "true"])), 100);
        assert_eq!(main(&[]), 100);
    }

    #[test]
    fn failures_exit_111() {
        assert_eq!(main(&os(&["chpst", "-u", "no-such-user-baseinit", "true"])), 111);
        assert_eq!(main(&os(&["chpst", "-U", ":1", "true"])), 111);
        assert_eq!(main(&os(&["chpst", "-e", "/nonexistent/baseinit", "true"])), 111);
        assert_eq!(main(&os(&["envdir", "/nonexistent/baseinit", "true"])), 111);
        assert_eq!(main(&os(&["envuidgid", "no-such-user-baseinit", "true"])), 111);
        // (A program that cannot run is tested in tests/chpst.rs: trying
        // would give this test process the default SIGPIPE.)
    }

    #[test]
    fn setlock_x_exits_0_when_it_cannot_lock() {
        assert_eq!(main(&os(&["setlock", "-x", "/nonexistent/baseinit/lock", "true"])), 0);
        assert_eq!(main(&os(&["setlock", "/nonexistent/baseinit/lock", "true"])), 111);
    }

    #[test]
    fn uid_and_gid_variables() {
        let ids = Ids {
            uid: nix::unistd::Uid::from_raw(33),
            gids: vec![nix::unistd::Gid::from_raw(34), nix::unistd::Gid::from_raw(4)],
        };
        assert_eq!(uid_gid(&ids), [b"GID=34".to_vec(), b"UID=33".to_vec()]);
    }
}
