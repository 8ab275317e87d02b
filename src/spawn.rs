//! Starting programs clean: own process group, empty signal mask, default
//! dispositions, only fds 0-2, chosen stdin, credentials. It never waits.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::libc;
use nix::unistd::{Gid, Pid, Uid};

use crate::container_env::Vars;
use crate::exit::SpawnFailure;

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
    /// Supplementary groups (the user's groups from the group database).
    pub groups: Vec<Gid>,
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
pub fn spawn(launch: &Launch, extra_args: &[OsString], base: &Vars, redirect: Redirect<'_>) -> Result<Pid, SpawnError> {
    let error = |source| SpawnError {
        program: launch
            .argv
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source,
    };
    let Some((program, args)) = launch.argv.split_first() else {
        return Err(error(io::Error::new(io::ErrorKind::InvalidInput, "empty command")));
    };
    let mut command = Command::new(program);
    command.args(args).args(extra_args);
    if let Some(cwd) = &launch.cwd {
        command.current_dir(cwd);
    }
    command.env_clear().envs(base);
    if let Some(creds) = &launch.credentials
        && let Some((user, home)) = &creds.identity
    {
        command.env("HOME", home).env("USER", user).env("LOGNAME", user);
    }
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    if let Some(socket) = redirect.notify_socket {
        command.env("NOTIFY_SOCKET", socket);
    }
    command.stdin(match (redirect.stdin, launch.stdin) {
        (Some(fd), _) => Stdio::from(fd.try_clone_to_owned().map_err(error)?),
        (None, StdinMode::Null) => Stdio::null(),
        (None, StdinMode::Inherit) => Stdio::inherit(),
    });
    if let Some(fd) = redirect.stdout {
        command.stdout(Stdio::from(fd.try_clone_to_owned().map_err(error)?));
    }
    if let Some(fd) = redirect.stderr {
        command.stderr(Stdio::from(fd.try_clone_to_owned().map_err(error)?));
    }
    let creds = launch.credentials.as_ref().map(|c| {
        (
            c.uid.as_raw(),
            c.gid.as_raw(),
            c.groups.iter().map(|g| g.as_raw()).collect::<Vec<_>>(),
        )
    });
    // Hand the terminal over only when baseinit holds it itself: a
    // `baseinit -- cmd &` in an interactive shell must not steal it.
    // SAFETY: plain syscalls on fd 0.
    let foreground = launch.foreground && unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() };
    let notify = redirect.notify.map(|(fd, target)| (fd.as_raw_fd(), target));
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (signal, setpgid, syscall, setgroups,
    // setgid, setuid, isatty, tcsetpgrp); it does not allocate: the
    // groups vector was built in the parent.
    unsafe {
        command.pre_exec(move || {
            // Every fd baseinit opens is close-on-exec already, and startup
            // marked the inherited ones; this is a cheap second guard (best
            // effort: kernels before 5.11 lack the flag).
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((uid, gid, groups)) = &creds
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            if foreground {
                // A background group may not change the terminal's foreground
                // group without ignoring SIGTTOU for the call.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
            }
            if let Some((fd, target)) = notify {
                // dup2 gives the new fd no close-on-exec; when it is already
                // at its place, clear the flag instead.
                let ok = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(fd, target) == target
                };
                if !ok {
                    return Err(io::Error::last_os_error());
                }
            }
            // Last, so nothing above can re-ignore a signal.
            clean_signals();
            Ok(())
        });
    }
    // std reports exec failures through a close-on-exec pipe and reaps that
    // child itself; this is safe because only the supervisor task spawns and
    // reaps, so no waitpid(-1) can run concurrently.
    let child = command.spawn().map_err(error)?;
    // Dropping a Child neither waits nor kills.
    Ok(Pid::from_raw(child.id() as i32))
}

/// Default disposition for every signal and an empty mask. Safe to call in a
/// forked child: only raw syscalls.
fn clean_signals() {
    // The kernel's struct sigaction all zero is SIG_DFL, no flags, empty mask,
    // whatever the architecture's layout (with or without sa_restorer).
    let default_action = [0u64; 4];
    // SAFETY: plain syscalls on valid pointers. The raw syscall, not libc's
    // signal(): glibc refuses its reserved signals 32 and 33, and an ignored
    // one would otherwise pass on to every child.
    unsafe {
        for signal in 1..=libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        let empty = 0u64;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}
