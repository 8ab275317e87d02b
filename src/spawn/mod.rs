//! Starting programs clean: own process group, empty signal mask, default
//! dispositions, only fds 0-2, chosen stdin, credentials. It never waits for
//! the outcome of an exec: a child whose exec fails says so through the
//! shared [`ExecReports`] pipe, which the reaper reads when it reaps that
//! child.
//!
//! Why not std's `Command`: with what a service needs (a process group,
//! credentials, a clean signal table) its `spawn` forks and then blocks on a
//! close-on-exec pipe until the exec has succeeded or failed. Services would
//! then start strictly one after another, each a full fork→exec round trip,
//! and a child waiting for a busy core would hold the whole boot up by a
//! scheduler tick.
//!
//! Why `clone(CLONE_VM)` and not `fork`, as posix_spawn does: a fork
//! copies baseinit's page tables, write-protects its memory (every later
//! write of PID 1 to a page is then a fault) and makes the child's exec tear
//! that copy down again, for every program started: a cost in CPU that
//! buys nothing, since the child only execs. Sharing the memory instead,
//! the child runs on a stack of its own until it calls `execve` (or exits).
//!
//! Why without CLONE_VFORK, unlike posix_spawn: with it, baseinit is
//! suspended until the child has done its dups, setpgid, sixty-odd
//! sigactions and the exec's path walk, so services would start strictly
//! one after another while the other CPUs sat idle. Without it, baseinit
//! prepares the next child while this one execs. The child then runs
//! *beside* baseinit in the same memory, which it may only touch in
//! ways that cannot race: it reads its own `Plan` (built before, freed only
//! once the child has let go of the memory: `InFlight`) and writes only its
//! stack and that plan; it makes raw system calls (`raw_syscall`) that
//! never store into libc's `errno`, baseinit's thread-local; no allocation,
//! no lock. A side benefit: a `chdir` or an `execve` that hangs (a working
//! directory or program on a dead network filesystem) does not hold
//! baseinit until it returns. Where `raw_syscall` has no raw call (an
//! architecture other than x86_64 and aarch64), CLONE_VFORK stays.
//!
//! Where a clone in shared memory is refused, children start by `fork`
//! instead, for the rest of the process's life: qemu's user-mode emulation
//! (foreign-architecture images) and seccomp profiles fail such a clone;
//! valgrind ends the process instead, so it is asked first (`in_flight`).
//!
//! The parts: `plan` builds what a child needs; `child` is the child up to
//! its exec, and `raw_syscall` its system calls; `in_flight` starts it and
//! frees the memory it ran on; `report` carries a failed start back;
//! `limits` is `[limits]`, from the plan to the child's calls.

mod child;
mod in_flight;
mod limits;
mod plan;
mod raw_syscall;
mod report;

use std::ffi::OsString;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use nix::libc;
use nix::unistd::{Gid, Pid, Uid};

use crate::container_env::Vars;
use crate::exit::SpawnFailure;

pub use in_flight::reclaim;
pub use limits::{Limits, Resource, Rlimit, UNLIMITED};
use plan::Plan;
pub use report::ExecReports;

/// What a child's stdin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinMode {
    /// `/dev/null`: services and startup scripts.
    Null,
    /// baseinit's own stdin: the main command, so `docker run -it` works.
    Inherit,
}

/// Who a child runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups (the user's groups from the group database);
    /// None keeps baseinit's (without CAP_SETGID it cannot set them).
    pub groups: Option<Vec<Gid>>,
    /// HOME, USER and LOGNAME for the child, when the user has a passwd entry.
    pub identity: Option<(String, PathBuf)>,
}

/// Everything needed to start one program, fixed at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub argv: Vec<OsString>,
    /// Working directory; None keeps baseinit's.
    pub cwd: Option<PathBuf>,
    /// Added to (or replacing) the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    pub stdin: StdinMode,
    pub credentials: Option<Credentials>,
    /// Make the child's process group the terminal's foreground group when
    /// stdin is a terminal (the main command of `docker run -it`).
    pub foreground: bool,
    /// `[limits]`: set in the child before its credentials change.
    pub limits: Option<Box<Limits>>,
}

impl Launch {
    pub fn program(argv: Vec<OsString>) -> Self {
        Launch {
            argv,
            cwd: None,
            env: Vec::new(),
            stdin: StdinMode::Null,
            credentials: None,
            foreground: false,
            limits: None,
        }
    }
}

/// A program that could not be started, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {program}: {source}")]
pub struct SpawnError {
    pub program: String,
    #[source]
    pub source: io::Error,
}

impl SpawnError {
    /// `launch`'s program could not be started: `source` says why.
    pub fn new(launch: &Launch, source: io::Error) -> Self {
        SpawnError {
            program: launch
                .argv
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source,
        }
    }

    pub fn failure(&self) -> SpawnFailure {
        match self.source.kind() {
            io::ErrorKind::NotFound => SpawnFailure::NotFound,
            _ => SpawnFailure::NotExecutable,
        }
    }
}

/// Pipe ends a child gets instead of its usual stdin, stdout or stderr (a
/// service and its `log/` logger share a pipe; prefixed output goes through
/// pipes baseinit reads).
#[derive(Clone, Copy, Debug, Default)]
pub struct Redirect<'a> {
    pub stdin: Option<BorrowedFd<'a>>,
    pub stdout: Option<BorrowedFd<'a>>,
    pub stderr: Option<BorrowedFd<'a>>,
    /// A pipe end the child gets at this fd number (s6's notification-fd).
    pub notify: Option<(BorrowedFd<'a>, i32)>,
    /// The child's `NOTIFY_SOCKET` (systemd's readiness protocol).
    pub notify_socket: Option<&'a std::path::Path>,
}

/// Starts `launch` with `extra_args` appended, in a new process group whose id
/// is the returned pid. The caller must register the pid before it next reaps.
/// The child's environment is `base` (the container environment), then the
/// user's identity, then the launch's own variables.
///
/// It returns as soon as the child exists, without waiting for its `execve`
/// (the child prepares and execs on another CPU). What fails before the
/// child starts (a NUL byte, an empty command, the clone itself: EAGAIN at a
/// pids limit) is an error here; what fails in the child (the exec, a chdir,
/// a setuid…) is reported through `reports` and the child exits 127.
pub fn spawn(
    launch: &Launch,
    extra_args: &[OsString],
    base: &Vars,
    redirect: Redirect<'_>,
    reports: &ExecReports,
) -> Result<Pid, SpawnError> {
    spawn_by(launch, extra_args, base, redirect, reports, in_flight::start_child)
}

/// [`spawn`], with the child started by `start` (the tests choose how).
fn spawn_by(
    launch: &Launch,
    extra_args: &[OsString],
    base: &Vars,
    redirect: Redirect<'_>,
    reports: &ExecReports,
    start: impl FnOnce(Box<Plan>) -> io::Result<libc::pid_t>,
) -> Result<Pid, SpawnError> {
    let error = |source| SpawnError::new(launch, source);
    let (plan, held) = Plan::build(launch, extra_args, base, redirect, reports.writer()).map_err(error)?;
    let pid = start(Box::new(plan)).map_err(error)?;
    // The child makes its own group too; whichever comes first makes it,
    // so a signal to the group cannot come before the group exists. After
    // the child's exec this fails (EACCES): it made the group already.
    // SAFETY: a plain syscall.
    unsafe { libc::setpgid(pid, pid) };
    // Our copies of the child's stdio: the child has its own fd table,
    // copied at the clone.
    drop(held);
    Ok(Pid::from_raw(pid))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::fd::{AsFd, AsRawFd};

    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn nul_bytes_and_an_empty_command_are_refused_before_the_fork() {
        let reports = ExecReports::new().unwrap();
        let base = Vars::new();
        let launch = Launch::program(vec![os("/bin/true"), os("a\0b")]);
        let err = spawn(&launch, &[], &base, Redirect::default(), &reports).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "cannot start /bin/true: nul byte found in provided data"
        );
        let empty = Launch::program(vec![]);
        let err = spawn(&empty, &[], &base, Redirect::default(), &reports).unwrap_err();
        assert_eq!(err.to_string(), "cannot start : empty command");
    }

    /// Spawns for real, and waits for that one pid (a test is not the
    /// supervisor: its waitpid rule is about waitpid(-1)).
    fn run(launch: &Launch, base: &Vars) -> (i32, Option<io::Error>) {
        run_by(launch, base, in_flight::start_child)
    }

    /// [`run`], the child started by `start`.
    fn run_by(
        launch: &Launch,
        base: &Vars,
        start: impl FnOnce(Box<Plan>) -> io::Result<libc::pid_t>,
    ) -> (i32, Option<io::Error>) {
        let mut reports = ExecReports::new().unwrap();
        let pid = spawn_by(launch, &[], base, Redirect::default(), &reports, start).unwrap();
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        let code = match status {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        };
        reports.collect();
        (code, reports.take(pid))
    }

    #[test]
    fn a_failure_is_reported_when_the_notification_fd_takes_the_report_pipes_number() {
        let mut reports = ExecReports::new().unwrap();
        let (_reader, writer) = nix::unistd::pipe().unwrap();
        let redirect = Redirect {
            notify: Some((writer.as_fd(), reports.writer().as_raw_fd())),
            ..Redirect::default()
        };
        let missing = Launch::program(vec![os("/no/such/program")]);
        let pid = spawn(&missing, &[], &Vars::new(), redirect, &reports).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
        reports.collect();
        assert_eq!(reports.take(pid).and_then(|e| e.raw_os_error()), Some(libc::ENOENT));
    }

    #[test]
    fn exec_failures_come_back_through_the_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let path: Vars = [(os("PATH"), dir.path().as_os_str().to_owned())].into_iter().collect();
        let write = |name: &str, text: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join(name);
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("ok", "#!/bin/sh\nexit 3\n", 0o755);
        write("noshebang", "exit 4\n", 0o755);
        write("denied", "#!/bin/sh\nexit 5\n", 0o644);

        let (code, error) = run(&Launch::program(vec![os("ok")]), &path);
        assert_eq!(
            (code, error.map(|e| e.kind())),
            (3, None),
            "found through the child's PATH"
        );
        let (code, error) = run(&Launch::program(vec![os("noshebang")]), &path);
        assert_eq!(
            (code, error.map(|e| e.kind())),
            (4, None),
            "run by /bin/sh, as execvp does"
        );
        let (code, error) = run(&Launch::program(vec![os("missing")]), &path);
        assert_eq!((code, error.and_then(|e| e.raw_os_error())), (127, Some(libc::ENOENT)));
        let (code, error) = run(&Launch::program(vec![os("denied")]), &path);
        assert_eq!((code, error.and_then(|e| e.raw_os_error())), (127, Some(libc::EACCES)));
        // A failed step before the exec is reported the same way.
        let nowhere = Launch {
            cwd: Some(dir.path().join("no-such-dir")),
            ..Launch::program(vec![os("/bin/true")])
        };
        let (code, error) = run(&nowhere, &path);
        assert_eq!((code, error.and_then(|e| e.raw_os_error())), (127, Some(libc::ENOENT)));
        // A relative name with a slash is relative to the child's cwd.
        let relative = Launch {
            cwd: Some(dir.path().to_owned()),
            ..Launch::program(vec![os("./ok")])
        };
        let (code, error) = run(&relative, &Vars::new());
        assert_eq!((code, error.map(|e| e.kind())), (3, None));
    }

    /// Starts `plan` as where a clone in baseinit's memory is refused: by a
    /// `Start` of its own (the process's is left as it is) whose clone
    /// fails with EINVAL, as under qemu's user-mode emulation.
    fn refused(plan: Box<Plan>) -> io::Result<libc::pid_t> {
        let refuse = |plan| {
            Err(in_flight::SharedError::Clone(
                plan,
                io::Error::from_raw_os_error(libc::EINVAL),
            ))
        };
        in_flight::Start::new().start(plan, refuse, in_flight::fork_copied)
    }

    /// A `/proc/PID/status` field.
    fn status_field(pid: i32, key: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn where_the_clone_is_refused_a_child_starts_by_fork_as_clean() {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
        // What this process would pass on: SIGPIPE ignored (Rust's runtime
        // does that), SIGUSR2 blocked in this thread, an fd without
        // close-on-exec.
        let me = std::process::id() as i32;
        assert_ne!(status_field(me, "SigIgn:"), "0000000000000000");
        let mut usr2 = SigSet::empty();
        usr2.add(Signal::SIGUSR2);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr2), Some(&mut old)).unwrap();
        let (_reader, _writer) = nix::unistd::pipe().unwrap();
        let reports = ExecReports::new().unwrap();
        let base: Vars = [(os("PATH"), os("/usr/bin:/bin"))].into_iter().collect();
        let sleeper = Launch::program(vec![os("sleep"), os("30")]);
        let started = spawn_by(&sleeper, &[], &base, Redirect::default(), &reports, refused);
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None).unwrap();
        let pid = started.unwrap().as_raw();
        assert!(!in_flight::holds(pid), "a forked child holds nothing of baseinit's");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap() != b"sleep\x0030\0" {
            assert!(std::time::Instant::now() < deadline, "no exec 10 s after the spawn");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // `sleep` opens locale data for a moment as it starts.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(status_field(pid, "SigBlk:"), "0000000000000000", "signal mask");
        assert_eq!(status_field(pid, "SigIgn:"), "0000000000000000", "ignored signals");
        assert_eq!(status_field(pid, "PPid:"), me.to_string(), "a child of this process");
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort();
        assert_eq!(fds, [0, 1, 2], "only fds 0-2");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let pgrp: i32 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pgrp, pid, "its own process group");
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(Pid::from_raw(pid), None).unwrap();
    }

    #[test]
    fn where_the_clone_is_refused_a_failed_start_is_reported_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path: Vars = [(os("PATH"), dir.path().as_os_str().to_owned())].into_iter().collect();
        let denied = dir.path().join("denied");
        std::fs::write(&denied, "#!/bin/sh\n").unwrap();
        let launches = [
            Launch::program(vec![os("/no/such/program")]),
            Launch::program(vec![os("no-such-program")]),
            Launch::program(vec![os("denied")]),
            Launch {
                cwd: Some(dir.path().join("no-such-dir")),
                ..Launch::program(vec![os("/bin/true")])
            },
        ];
        for launch in &launches {
            let summary = |(code, error): (i32, Option<io::Error>)| (code, error.map(|e| e.to_string()));
            let shared = summary(run(launch, &path));
            let forked = summary(run_by(launch, &path, refused));
            assert_eq!(forked, shared, "{:?}", launch.argv);
            assert_eq!(forked.0, 127, "{:?}", launch.argv);
        }
        // And a program that runs, runs.
        let ok = Launch::program(vec![os("/bin/sh"), os("-c"), os("exit 3")]);
        assert_eq!(summary_code(run_by(&ok, &path, refused)), (3, None));
    }

    fn summary_code((code, error): (i32, Option<io::Error>)) -> (i32, Option<i32>) {
        (code, error.and_then(|e| e.raw_os_error()))
    }
}
