//! What a child needs, built in baseinit before the child starts: argv,
//! envp and the files to exec as C arrays, the fds it puts in place, its
//! credentials. The child may not allocate, take a lock or call libc
//! (`child`), so everything it reads is ready here.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{FcntlArg, OFlag};
use nix::libc;
use nix::unistd::{Gid, Uid};

use super::limits::Prepared;
use super::{Launch, Redirect, StdinMode};
use crate::container_env::Vars;

/// Everything the child needs, built before it starts. The child runs in
/// baseinit's own memory while baseinit goes on (and beside threads that may
/// hold locks, malloc's among them): it must not allocate or take a lock, so
/// it only reads this and makes raw syscalls. The plan is the child's alone
/// until it execs (see `InFlight`). The `CString` vectors keep the
/// pointed-to bytes alive; moving them here does not move those bytes.
pub(super) struct Plan {
    _argv: Vec<CString>,
    pub(super) argv: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    pub(super) envp: Vec<*const libc::c_char>,
    pub(super) candidates: Vec<CString>,
    /// execvp's fallback for an executable without `#!` (ENOEXEC):
    /// `/bin/sh FILE ARGS…`; the child puts the file in slot 1.
    pub(super) shell_argv: Vec<*const libc::c_char>,
    pub(super) cwd: Option<CString>,
    /// What goes onto fds 0, 1 and 2 (None: inherited). Each is above 2, so
    /// no dup onto 0-2 can close another's source.
    pub(super) stdio: [Option<RawFd>; 3],
    pub(super) creds: Option<(libc::uid_t, libc::gid_t, Option<Vec<libc::gid_t>>)>,
    pub(super) foreground: bool,
    pub(super) notify: Option<(RawFd, i32)>,
    /// `[limits]`, ready for the child's calls.
    pub(super) limits: Option<Prepared>,
    /// The exec report pipe's write end, out of the dups' reach.
    pub(super) report: RawFd,
    /// The highest signal number, asked of libc here: the child calls no
    /// libc function.
    pub(super) sigrtmax: i32,
}

impl Plan {
    /// The plan for `launch` with `extra_args` appended (see `spawn`), the
    /// child's failures to be reported on `report`; and the fds it holds
    /// for the child, to close once the child has started.
    pub(super) fn build(
        launch: &Launch,
        extra_args: &[OsString],
        base: &Vars,
        redirect: Redirect<'_>,
        report: BorrowedFd<'_>,
    ) -> io::Result<(Plan, Vec<OwnedFd>)> {
        let Some(program) = launch.argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let env = child_env(launch, base, redirect.notify_socket);
        // A bare name is searched in the child's PATH, not baseinit's (as std's
        // Command did when given an environment).
        let candidates = exec_candidates(program, env.get(OsStr::new("PATH")).copied())
            .and_then(|files| files.into_iter().map(|f| c_string(f.into_encoded_bytes())).collect())?;
        let argv = launch
            .argv
            .iter()
            .chain(extra_args)
            .map(|a| c_string(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let env = env_strings(&env)?;
        let cwd = launch
            .cwd
            .as_ref()
            .map(|dir| c_string(dir.as_os_str().as_bytes()))
            .transpose()?;
        let mut shell_argv = vec![SHELL.as_ptr(), std::ptr::null()];
        shell_argv.extend(argv.iter().skip(1).map(|a| a.as_ptr()));
        shell_argv.push(std::ptr::null());

        let mut held = Vec::new();
        let stdin = match (redirect.stdin, launch.stdin) {
            (Some(fd), _) => Some(stdio_source(fd, &mut held)),
            (None, StdinMode::Null) => Some(
                nix::fcntl::open(
                    "/dev/null",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(io::Error::from)
                .and_then(above_stdio)
                .map(|fd| {
                    let raw = fd.as_raw_fd();
                    held.push(fd);
                    raw
                }),
            ),
            (None, StdinMode::Inherit) => None,
        };
        let stdin = stdin.transpose()?;
        let stdout = redirect.stdout.map(|fd| stdio_source(fd, &mut held)).transpose()?;
        let stderr = redirect.stderr.map(|fd| stdio_source(fd, &mut held)).transpose()?;
        // Above 2 too: the stdio dup2s must not close it before its own dup2.
        let notify = redirect
            .notify
            .map(|(fd, target)| stdio_source(fd, &mut held).map(|fd| (fd, target)))
            .transpose()?;
        // The report pipe must outlive the notification fd's dup.
        let report = match copy_out_of_dup_reach(report, notify.map(|(_, target)| target))? {
            Some(copy) => {
                let raw = copy.as_raw_fd();
                held.push(copy);
                raw
            }
            None => report.as_raw_fd(),
        };
        // Hand the terminal over only when baseinit holds it itself: a
        // `baseinit -- cmd &` in an interactive shell must not steal it.
        // SAFETY: plain syscalls on fd 0.
        let foreground = launch.foreground && unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() };
        let plan = Plan {
            argv: pointers(&argv),
            _argv: argv,
            envp: pointers(&env),
            _env: env,
            candidates,
            shell_argv,
            cwd,
            stdio: [stdin, stdout, stderr],
            // Nothing to call when the child already is what it asks for
            // (baseinit's own ids, its groups kept): without privileges,
            // even a no-op setgroups would fail.
            creds: launch
                .credentials
                .as_ref()
                .filter(|c| c.groups.is_some() || c.uid != Uid::effective() || c.gid != Gid::effective())
                .map(|c| {
                    (
                        c.uid.as_raw(),
                        c.gid.as_raw(),
                        c.groups.as_ref().map(|g| g.iter().map(|g| g.as_raw()).collect()),
                    )
                }),
            foreground,
            notify,
            limits: launch.limits.as_deref().map(Prepared::new),
            report,
            sigrtmax: libc::SIGRTMAX(),
        };
        Ok((plan, held))
    }
}

/// The child's environment: `base` (the container environment), then the
/// user's identity, then the launch's own variables, then `NOTIFY_SOCKET`;
/// a later one replaces an earlier one of the same name. Sorted by name, as
/// std's `Command` passed it.
fn child_env<'a>(
    launch: &'a Launch,
    base: &'a Vars,
    notify_socket: Option<&'a Path>,
) -> BTreeMap<&'a OsStr, &'a OsStr> {
    let mut env: BTreeMap<&OsStr, &OsStr> = base.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
    if let Some(creds) = &launch.credentials
        && let Some((user, home)) = &creds.identity
    {
        env.insert(OsStr::new("HOME"), home.as_os_str());
        env.insert(OsStr::new("USER"), OsStr::new(user));
        env.insert(OsStr::new("LOGNAME"), OsStr::new(user));
    }
    for (name, value) in &launch.env {
        env.insert(name, value);
    }
    if let Some(socket) = notify_socket {
        env.insert(OsStr::new("NOTIFY_SOCKET"), socket.as_os_str());
    }
    env
}

/// execvp's search path when the environment has no PATH (glibc's CS_PATH).
const DEFAULT_PATH: &str = "/bin:/usr/bin";
/// execvp's interpreter for an executable without a `#!` line.
pub(super) const SHELL: &CStr = c"/bin/sh";
/// The longest file name (glibc's execvp refuses a longer bare name).
const NAME_MAX: usize = 255;

/// The files to try, in order, for `program`, as glibc's execvp does, with
/// `path` the child's PATH: a name with a '/' as is (relative to the child's
/// working directory), a bare name in each PATH directory (an empty entry is
/// the working directory).
fn exec_candidates(program: &OsStr, path: Option<&OsStr>) -> io::Result<Vec<OsString>> {
    let bytes = program.as_bytes();
    if bytes.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    if bytes.contains(&b'/') {
        return Ok(vec![program.to_owned()]);
    }
    if bytes.len() > NAME_MAX {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    Ok(path
        .as_bytes()
        .split(|b| *b == b':')
        .map(|dir| {
            if dir.is_empty() {
                program.to_owned()
            } else {
                let mut file = OsStr::from_bytes(dir).to_owned();
                file.push("/");
                file.push(program);
                file
            }
        })
        .collect())
}

/// std's message for a NUL inside an argument or variable.
fn nul_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "nul byte found in provided data")
}

fn c_string(bytes: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| nul_error())
}

/// The child's `envp` strings, `NAME=VALUE`.
fn env_strings(env: &BTreeMap<&OsStr, &OsStr>) -> io::Result<Vec<CString>> {
    env.iter()
        .map(|(name, value)| {
            let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
            entry.extend_from_slice(name.as_bytes());
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            c_string(entry)
        })
        .collect()
}

/// Pointers to `strings`, then the null pointer that ends an argv or envp.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `fd`'s number if it is above 2, else that of a close-on-exec copy above 2
/// kept in `held` (closed in the parent once the child has started).
fn stdio_source(fd: BorrowedFd<'_>, held: &mut Vec<OwnedFd>) -> io::Result<RawFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd.as_raw_fd());
    }
    let copy = fd.try_clone_to_owned()?;
    let raw = copy.as_raw_fd();
    held.push(copy);
    Ok(raw)
}

/// `fd` itself when it is above 2, else a close-on-exec copy that is.
pub(super) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        Ok(fd)
    } else {
        // std's try_clone is F_DUPFD_CLOEXEC with a minimum of 3.
        fd.try_clone()
    }
}

/// Whether the child's dups could land on `fd` (0-2, or the notification
/// fd's `notify_target`): then the lowest number a copy out of their reach
/// may take.
fn in_dup_reach(fd: RawFd, notify_target: Option<i32>) -> Option<RawFd> {
    (fd <= 2 || Some(fd) == notify_target).then(|| notify_target.unwrap_or(0).max(2) + 1)
}

/// A close-on-exec copy of `fd` out of the child's dups' reach, when `fd`
/// is within it (an fd the child needs until its exec: only when baseinit
/// started with one of 0-2 closed, or by chance at the notification fd's
/// number).
pub(super) fn copy_out_of_dup_reach(fd: BorrowedFd<'_>, notify_target: Option<i32>) -> io::Result<Option<OwnedFd>> {
    let Some(above) = in_dup_reach(fd.as_raw_fd(), notify_target) else {
        return Ok(None);
    };
    let copy = nix::fcntl::fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(above))?;
    // SAFETY: a new fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(copy) }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nix::unistd::{Gid, Uid};

    use super::*;
    use crate::spawn::Credentials;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    fn candidates(program: &str, path: Option<&str>) -> io::Result<Vec<String>> {
        exec_candidates(OsStr::new(program), path.map(OsStr::new))
            .map(|files| files.into_iter().map(|f| f.into_string().unwrap()).collect())
    }

    #[test]
    fn a_name_with_a_slash_is_tried_as_is() {
        for program in ["/bin/sh", "./run", "bin/tool", "../x"] {
            assert_eq!(candidates(program, Some("/usr/bin")).unwrap(), [program]);
        }
    }

    #[test]
    fn a_bare_name_is_searched_in_path_in_order() {
        assert_eq!(
            candidates("tool", Some("/opt/bin:/usr/bin:/bin")).unwrap(),
            ["/opt/bin/tool", "/usr/bin/tool", "/bin/tool"]
        );
        // An empty entry (leading, inner, trailing, or the whole PATH) is the
        // working directory, as in execvp.
        assert_eq!(
            candidates("tool", Some(":/a::/b:")).unwrap(),
            ["tool", "/a/tool", "tool", "/b/tool", "tool"]
        );
        assert_eq!(candidates("tool", Some("")).unwrap(), ["tool"]);
        assert_eq!(candidates("tool", Some("/a/")).unwrap(), ["/a//tool"]);
    }

    #[test]
    fn without_path_the_search_is_glibcs_default() {
        assert_eq!(candidates("sh", None).unwrap(), ["/bin/sh", "/usr/bin/sh"]);
    }

    #[test]
    fn an_empty_or_overlong_name_fails_before_the_fork() {
        assert_eq!(candidates("", None).unwrap_err().raw_os_error(), Some(libc::ENOENT));
        let long = "x".repeat(256);
        assert_eq!(
            candidates(&long, None).unwrap_err().raw_os_error(),
            Some(libc::ENAMETOOLONG)
        );
        assert_eq!(candidates(&"x".repeat(255), Some("/a")).unwrap().len(), 1);
    }

    #[test]
    fn the_environment_is_base_then_identity_then_own_then_notify_socket() {
        let base: Vars = [("PATH", "/base"), ("HOME", "/root"), ("KEEP", "1"), ("A", "base")]
            .into_iter()
            .map(|(k, v)| (os(k), os(v)))
            .collect();
        let launch = Launch {
            env: vec![
                (os("A"), os("own")),
                (os("NOTIFY_SOCKET"), os("own")),
                (os("Z"), os("z")),
            ],
            credentials: Some(Credentials {
                uid: Uid::from_raw(1000),
                gid: Gid::from_raw(1000),
                groups: Some(vec![]),
                identity: Some(("app".to_owned(), PathBuf::from("/home/app"))),
            }),
            ..Launch::program(vec![os("x")])
        };
        let env = child_env(&launch, &base, Some(Path::new("/run/n.sock")));
        let strings: Vec<String> = env_strings(&env)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            strings,
            [
                "A=own",
                "HOME=/home/app",
                "KEEP=1",
                "LOGNAME=app",
                "NOTIFY_SOCKET=/run/n.sock",
                "PATH=/base",
                "USER=app",
                "Z=z",
            ]
        );
        // Without credentials or a socket, the base and the launch's own.
        let plain = Launch::program(vec![os("x")]);
        let env = child_env(&plain, &base, None);
        assert_eq!(env.get(OsStr::new("HOME")), Some(&OsStr::new("/root")));
        assert_eq!(env.len(), 4);
    }

    #[test]
    fn argv_and_envp_are_null_terminated_pointer_arrays() {
        let strings = vec![c_string("a").unwrap(), c_string("b c").unwrap()];
        let ptrs = pointers(&strings);
        assert_eq!(ptrs.len(), 3);
        assert!(ptrs[2].is_null());
        // SAFETY: the pointers point into `strings`, alive here.
        let first = unsafe { CStr::from_ptr(ptrs[1]) };
        assert_eq!(first.to_str().unwrap(), "b c");
        assert!(pointers(&[])[0].is_null());
    }

    #[test]
    fn nul_bytes_are_refused_before_the_fork() {
        let err = c_string("a\0b").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let env: BTreeMap<&OsStr, &OsStr> = [(OsStr::new("A"), OsStr::new("x\0y"))].into_iter().collect();
        assert!(env_strings(&env).is_err());
    }

    #[test]
    fn the_release_pipe_is_kept_out_of_the_childs_dups() {
        // Its write end must outlive every dup the child makes, or the plan
        // and stack would be freed while the child still runs on them.
        assert_eq!(in_dup_reach(7, None), None);
        assert_eq!(in_dup_reach(7, Some(3)), None);
        for stdio in 0..=2 {
            assert_eq!(in_dup_reach(stdio, None), Some(3));
            assert_eq!(in_dup_reach(stdio, Some(9)), Some(10));
        }
        assert_eq!(in_dup_reach(5, Some(5)), Some(6));
        assert_eq!(in_dup_reach(1, Some(1)), Some(3));
    }
}
