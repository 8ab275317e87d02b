//! Starting programs clean: own process group, empty signal mask, default
//! dispositions, only fds 0-2, chosen stdin, credentials. It never waits for
//! the outcome of an exec: a child whose exec fails says so through the
//! shared [`ExecReports`] pipe, which the reaper reads when it reaps that
//! child.
//!
//! Why not std's `Command`: with what a service needs (a process group,
//! credentials, a clean signal table) its `spawn` forks and then blocks on a
//! close-on-exec pipe until the exec has succeeded or failed. Services then
//! started strictly one after another, each a full fork→exec round trip, and
//! a child waiting for a busy core held the whole boot up by a scheduler
//! tick (2-5 ms per service, measured).
//!
//! Why `clone(CLONE_VM)` and not `fork`, as posix_spawn does: a fork
//! copies baseinit's page tables, write-protects its memory (every later
//! write of PID 1 to a page is then a fault) and makes the child's exec tear
//! that copy down again; the benchmark measured that as a tenth of the CPU
//! a 20-service boot costs. Sharing the memory instead, the child runs on a
//! stack of its own until it calls `execve` (or exits).
//!
//! Why without CLONE_VFORK, unlike posix_spawn: with it, baseinit is
//! suspended until the child has done its dups, setpgid, sixty-odd
//! sigactions and the exec's path walk, so services started strictly one
//! after another while the other CPU sat idle; a 20-service boot was
//! 6-13% slower than tini starting them from a shell script (5% faster
//! without it, in 50 interleaved runs). Without it,
//! baseinit prepares the next child while this one execs. The child then
//! runs *beside* baseinit in the same memory, which it may only touch in
//! ways that cannot race: it reads its own `Plan` (built before, freed only
//! once the child has let go of the memory: `InFlight`) and writes only its
//! stack and that plan; it makes raw system calls (`raw_syscall`) that
//! never store into libc's `errno`, baseinit's thread-local; no allocation,
//! no lock. A side benefit: a `chdir` or an `execve` that hangs (a working
//! directory or program on a dead network filesystem) no longer holds
//! baseinit until it returns. Where `raw_syscall` has no raw call (an
//! architecture other than x86_64 and aarch64), CLONE_VFORK stays.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag};
use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
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

/// One report: the child's pid and the errno of what failed, native-endian
/// i32s. Written with one write(2), far below PIPE_BUF, so it is atomic:
/// records from many children never interleave.
const RECORD: usize = 8;

/// The pipe children report a failed start through (an exec, or a step
/// before it), created once and shared by all of them. Both ends are
/// close-on-exec, so a child that exec'd holds no copy and says nothing: a
/// record always means failure. A child writes its record *before* it exits,
/// so once the reaper has a child's exit, that child's record is in the pipe:
/// [`ExecReports::collect`] after each drain, then [`ExecReports::take`] for
/// each reaped pid.
pub struct ExecReports {
    /// Non-blocking: `collect` reads until the pipe is empty.
    reader: OwnedFd,
    /// Blocking: a child never drops its record for a full pipe; it waits
    /// for the reaper to empty it (which every SIGCHLD does).
    writer: OwnedFd,
    /// errno by pid, for records read whose child has not been reaped yet.
    pending: HashMap<i32, i32>,
    /// The start of a record whose rest is not read yet (never seen: records
    /// are written whole and read in multiples of their size).
    partial: Vec<u8>,
}

impl ExecReports {
    pub fn new() -> io::Result<Self> {
        let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        // Above 0-2, which children get their stdio dup'd onto (baseinit
        // may have been started with one of them closed).
        Ok(ExecReports {
            reader: above_stdio(reader)?,
            writer: above_stdio(writer)?,
            pending: HashMap::new(),
            partial: Vec::new(),
        })
    }

    /// Reads every record in the pipe. Call after reaping, before looking
    /// the reaped pids up with `take`.
    pub fn collect(&mut self) {
        let mut buf = [0u8; 64 * RECORD];
        loop {
            match nix::unistd::read(&self.reader, &mut buf) {
                Ok(0) => return, // cannot happen: we hold the write end
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    let whole = self.partial.len() - self.partial.len() % RECORD;
                    for record in self.partial[..whole].chunks_exact(RECORD) {
                        let (pid, errno) = decode_record(record);
                        self.pending.insert(pid, errno);
                    }
                    self.partial.drain(..whole);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(errno) => {
                    tracing::error!("cannot read the exec report pipe: {errno}");
                    return;
                }
            }
        }
    }

    /// Why the reaped child `pid` could not start, if it reported a failure.
    pub fn take(&mut self, pid: Pid) -> Option<io::Error> {
        self.pending.remove(&pid.as_raw()).map(io::Error::from_raw_os_error)
    }
}

fn decode_record(record: &[u8]) -> (i32, i32) {
    let word = |at: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&record[at..at + 4]);
        i32::from_ne_bytes(bytes)
    };
    (word(0), word(4))
}

fn encode_record(pid: i32, errno: i32) -> [u8; RECORD] {
    let [a, b, c, d] = pid.to_ne_bytes();
    let [e, f, g, h] = errno.to_ne_bytes();
    [a, b, c, d, e, f, g, h]
}

/// `fd` itself when it is above 2, else a close-on-exec copy that is.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        Ok(fd)
    } else {
        // std's try_clone is F_DUPFD_CLOEXEC with a minimum of 3.
        fd.try_clone()
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
const SHELL: &CStr = c"/bin/sh";
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

/// Everything the child needs, built before it starts. The child runs in
/// baseinit's own memory while baseinit goes on (and beside threads that may
/// hold locks, malloc's among them): it must not allocate or take a lock, so
/// it only reads this and makes raw syscalls. The plan is the child's alone
/// until it execs (see `InFlight`). The `CString` vectors keep the
/// pointed-to bytes alive; moving them here does not move those bytes.
struct Plan {
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
    /// execvp's fallback for an executable without `#!` (ENOEXEC):
    /// `/bin/sh FILE ARGS…`; the child puts the file in slot 1.
    shell_argv: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// What goes onto fds 0, 1 and 2 (None: inherited). Each is above 2, so
    /// no dup onto 0-2 can close another's source.
    stdio: [Option<RawFd>; 3],
    creds: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    foreground: bool,
    notify: Option<(RawFd, i32)>,
    /// The exec report pipe's write end, out of the dups' reach.
    report: RawFd,
    /// The highest signal number, asked of libc here: the child calls no
    /// libc function.
    sigrtmax: i32,
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
    let error = |source| SpawnError::new(launch, source);
    let Some(program) = launch.argv.first() else {
        return Err(error(io::Error::new(io::ErrorKind::InvalidInput, "empty command")));
    };
    let env = child_env(launch, base, redirect.notify_socket);
    // A bare name is searched in the child's PATH, not baseinit's (as std's
    // Command did when given an environment).
    let candidates = exec_candidates(program, env.get(OsStr::new("PATH")).copied())
        .and_then(|files| files.into_iter().map(|f| c_string(f.into_encoded_bytes())).collect())
        .map_err(error)?;
    let argv = launch
        .argv
        .iter()
        .chain(extra_args)
        .map(|a| c_string(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(error)?;
    let env = env_strings(&env).map_err(error)?;
    let cwd = launch
        .cwd
        .as_ref()
        .map(|dir| c_string(dir.as_os_str().as_bytes()))
        .transpose()
        .map_err(error)?;
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
    let stdin = stdin.transpose().map_err(error)?;
    let stdout = redirect
        .stdout
        .map(|fd| stdio_source(fd, &mut held))
        .transpose()
        .map_err(error)?;
    let stderr = redirect
        .stderr
        .map(|fd| stdio_source(fd, &mut held))
        .transpose()
        .map_err(error)?;
    // Above 2 too: the stdio dup2s must not close it before its own dup2.
    let notify = redirect
        .notify
        .map(|(fd, target)| stdio_source(fd, &mut held).map(|fd| (fd, target)))
        .transpose()
        .map_err(error)?;
    // The report pipe must outlive the notification fd's dup.
    let report = match copy_out_of_dup_reach(reports.writer.as_fd(), notify.map(|(_, target)| target)).map_err(error)? {
        Some(copy) => {
            let raw = copy.as_raw_fd();
            held.push(copy);
            raw
        }
        None => reports.writer.as_raw_fd(),
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
        creds: launch.credentials.as_ref().map(|c| {
            (
                c.uid.as_raw(),
                c.gid.as_raw(),
                c.groups.iter().map(|g| g.as_raw()).collect(),
            )
        }),
        foreground,
        notify,
        report,
        sigrtmax: libc::SIGRTMAX(),
    };

    let pid = start_child(Box::new(plan)).map_err(error)?;
    // The child makes its own group too; whichever comes first makes it,
    // so a signal to the group cannot come before the group exists. After
    // the child's exec this fails (EACCES): it made the group already.
    // SAFETY: a plain syscall.
    unsafe { libc::setpgid(pid, pid) };
    // `held` (our copies of the child's stdio) is closed here: the child
    // has its own fd table, copied at the clone.
    Ok(Pid::from_raw(pid))
}

/// A child started in baseinit's memory that may still run there: its plan
/// and stack stay until `released` reads end of file. The pipe's write end
/// is the child's alone, close-on-exec: it closes when the child's exec has
/// let go of baseinit's memory (the kernel switches the memory before it
/// closes close-on-exec fds), or when the child exits (memory, then fds).
/// (CLONE_CHILD_CLEARTID would say the same without a pipe, but musl's
/// clone refuses that flag.)
struct InFlight {
    #[cfg_attr(not(test), expect(dead_code, reason = "which child: for the tests"))]
    pid: libc::pid_t,
    plan: *mut Plan,
    /// Unmapped when the entry is dropped.
    _stack: ChildStack,
    released: OwnedFd,
}

// SAFETY: the plan pointer is owned (a leaked Box) and only the thread
// holding IN_FLIGHT's lock frees it.
unsafe impl Send for InFlight {}

static IN_FLIGHT: std::sync::Mutex<Vec<InFlight>> = std::sync::Mutex::new(Vec::new());

/// Frees the plans and stacks of children that have exec'd (or exited).
/// Called at each spawn and at each turn of the supervisor's loop, which
/// comes soon after any spawn (the boot's catch-up rescan, the child's
/// SIGCHLD, a restart's timer): a few kB wait for it at most.
pub fn reclaim() {
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    in_flight.retain(|child| {
        let mut byte = [0u8; 1];
        // End of file: the child has left this memory (see `InFlight`).
        if !matches!(nix::unistd::read(&child.released, &mut byte), Ok(0)) {
            return true;
        }
        // SAFETY: nothing else uses the plan now; the stack goes with
        // `child`.
        drop(unsafe { Box::from_raw(child.plan) });
        false
    });
    if in_flight.is_empty() {
        // Its buffer too: PID 1 idles for the container's life.
        *in_flight = Vec::new();
    }
}

/// A child's stack: `CHILD_STACK` bytes above one guard page (an overflow
/// faults instead of writing into baseinit's memory). `exec_child` and the
/// calls it makes need well under 4 kB (no recursion, no allocation), so
/// 64 kB is a wide margin; untouched pages cost nothing (MAP_NORESERVE).
struct ChildStack(*mut libc::c_void);

const CHILD_STACK: usize = 64 * 1024;
const GUARD: usize = 4096;

impl ChildStack {
    fn new() -> io::Result<Self> {
        // SAFETY: a fresh anonymous private mapping, then a change of
        // protection within it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                GUARD + CHILD_STACK,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let stack = ChildStack(base);
            if libc::mprotect(
                base.cast::<u8>().add(GUARD).cast(),
                CHILD_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(stack)
        }
    }

    /// Where the child's stack pointer starts: it grows down from there on
    /// every architecture we build; page-aligned, so 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping.
        unsafe { self.0.cast::<u8>().add(GUARD + CHILD_STACK).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our mapping; dropped only once no child runs on it.
        unsafe { libc::munmap(self.0, GUARD + CHILD_STACK) };
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
fn copy_out_of_dup_reach(fd: BorrowedFd<'_>, notify_target: Option<i32>) -> io::Result<Option<OwnedFd>> {
    let Some(above) = in_dup_reach(fd.as_raw_fd(), notify_target) else {
        return Ok(None);
    };
    let copy = nix::fcntl::fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(above))?;
    // SAFETY: a new fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(copy) }))
}

/// Starts the child on a stack of its own in baseinit's memory, beside this
/// thread (no CLONE_VFORK where `raw_syscall` bypasses libc): baseinit goes
/// on while the child prepares and execs. Returns its pid.
fn start_child(plan: Box<Plan>) -> io::Result<libc::pid_t> {
    extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `Plan` `start_child` was given, which stays
        // allocated, and untouched by anyone else, until this child lets go
        // of baseinit's memory (see `InFlight`).
        unsafe { exec_child(&mut *arg.cast::<Plan>()) }
    }
    reclaim();
    let stack = ChildStack::new()?;
    let (released, keep) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // The child must not close its write end before its exec, as a dup onto
    // that number would.
    let keep = copy_out_of_dup_reach(keep.as_fd(), plan.notify.map(|(_, target)| target))?.unwrap_or(keep);
    let plan = Box::into_raw(plan);
    let flags = libc::CLONE_VM
        | libc::SIGCHLD
        | if crate::raw_syscall::CONCURRENT {
            0
        } else {
            libc::CLONE_VFORK
        };
    // Every signal blocked across the clone: the child must run no handler
    // of baseinit's (tokio's would write to baseinit's wake-up pipe, in
    // baseinit's memory) before `clean_signals` puts every disposition back
    // to its default (in the child's own table: no CLONE_SIGHAND); it ends
    // with an empty mask. A failure leaves the mask as it was: nothing to do.
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old)).is_ok();
    // SAFETY: `entry` only makes raw syscalls on what `plan` holds and never
    // returns; libc's clone runs it on `stack` and touches nothing else of
    // ours in the child (no thread-local state with CLONE_VM).
    let pid = unsafe { libc::clone(entry, stack.top(), flags, plan.cast()) };
    let start_error = io::Error::last_os_error();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    // Now the child holds the only write end.
    drop(keep);
    if pid < 0 {
        // SAFETY: no child was made: nothing else uses the plan.
        drop(unsafe { Box::from_raw(plan) });
        return Err(start_error);
    }
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(InFlight {
            pid,
            plan,
            _stack: stack,
            released,
        });
    Ok(pid)
}

/// The child, up to the exec: stdio, working directory, fds, process
/// group, credentials, terminal, notification fd, signals, then each file
/// `plan` lists. Any failure is reported with its errno, and the child exits
/// 127. It runs in baseinit's memory while baseinit runs too, so: only the
/// calls of `raw_syscall` (libc's wrappers would write their errno into
/// baseinit's, and some take locks or, as `setuid` in a threaded process,
/// signal every thread), no allocation, no panic, and it writes nothing but
/// its own stack and plan: what it reads was built before it started.
///
/// # Safety
/// Call only in a child started by `start_child`, with `plan` built by `spawn`.
unsafe fn exec_child(plan: &mut Plan) -> ! {
    use crate::raw_syscall as sys;
    // SAFETY (whole body): calls on fds and on NUL-terminated strings and
    // pointer arrays that `plan` owns.
    unsafe {
        let report = plan.report;
        // Each source is above 2 (see `Plan::stdio`): never its own target.
        for (target, source) in (0..).zip(plan.stdio) {
            if let Some(fd) = source
                && let Err(errno) = sys::dup3(fd, target)
            {
                report_and_exit(report, errno);
            }
        }
        if let Some(dir) = &plan.cwd
            && let Err(errno) = sys::chdir(dir)
        {
            report_and_exit(report, errno);
        }
        // Every fd baseinit opens is close-on-exec already, and startup
        // marked the inherited ones; this is a cheap second guard (best
        // effort: kernels before 5.11 lack the flag).
        let _ = sys::cloexec_from(3);
        if let Err(errno) = sys::own_process_group() {
            report_and_exit(report, errno);
        }
        if let Some((uid, gid, groups)) = &plan.creds
            && let Err(errno) = sys::set_credentials(*uid, *gid, groups)
        {
            report_and_exit(report, errno);
        }
        if plan.foreground {
            // A background group may not change the terminal's foreground
            // group without ignoring SIGTTOU for the call (`clean_signals`
            // puts it back).
            let _ = sys::set_disposition(libc::SIGTTOU, libc::SIG_IGN);
            let _ = sys::set_foreground(0, sys::getpid());
        }
        if let Some((fd, target)) = plan.notify {
            // dup3 gives the new fd no close-on-exec; when it is already
            // at its place, clear the flag instead.
            let placed = if fd == target {
                sys::keep_on_exec(fd)
            } else {
                sys::dup3(fd, target)
            };
            if let Err(errno) = placed {
                report_and_exit(report, errno);
            }
        }
        // Last, so nothing above can re-ignore a signal.
        clean_signals(plan.sigrtmax);
        // glibc's execvp, over the list built in the parent: the first file
        // that execs wins; a missing one (or a PATH entry that is not a
        // directory) is skipped; a denied one is remembered, to be the
        // error if no other works; any other error ends the search.
        let mut denied = false;
        let mut last = libc::ENOENT;
        for file in &plan.candidates {
            last = sys::execve(file, plan.argv.as_ptr(), plan.envp.as_ptr());
            if last == libc::ENOEXEC {
                plan.shell_argv[1] = file.as_ptr();
                last = sys::execve(SHELL, plan.shell_argv.as_ptr(), plan.envp.as_ptr());
            }
            match last {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => report_and_exit(report, last),
            }
        }
        report_and_exit(report, if denied { libc::EACCES } else { last })
    }
}

/// Writes the child's record (its pid, `errno`) in one write and exits 127.
///
/// # Safety
/// Only in a child started by `start_child` (see `exec_child`).
unsafe fn report_and_exit(report: RawFd, errno: i32) -> ! {
    use crate::raw_syscall as sys;
    // The pid from the kernel: nothing cached in the parent can be wrong.
    let record = encode_record(sys::getpid(), errno);
    // SAFETY: a local array. A failed write leaves the exit 127 unexplained;
    // there is nothing else to tell it through.
    let _ = unsafe { sys::write(report, &record) };
    sys::exit(127)
}

/// Default disposition for every signal up to `sigrtmax`, and an empty
/// mask. Safe in a child (see `exec_child`): only `raw_syscall`'s calls.
/// The kernel's call, not libc's signal(): glibc refuses its reserved
/// signals 32 and 33, and an ignored one would otherwise pass on to every
/// child.
fn clean_signals(sigrtmax: i32) {
    use crate::raw_syscall as sys;
    // SAFETY: plain calls with integers and local structs.
    unsafe {
        for signal in 1..=sigrtmax {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                let _ = sys::set_disposition(signal, libc::SIG_DFL);
            }
        }
        let _ = sys::unblock_all_signals();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                groups: vec![],
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

    #[test]
    fn reports_are_read_whole_and_taken_once() {
        let mut reports = ExecReports::new().unwrap();
        assert!(reports.reader.as_raw_fd() > 2 && reports.writer.as_raw_fd() > 2);
        reports.collect(); // empty: returns at once (non-blocking)
        let writer = reports.writer.try_clone().unwrap();
        let write = |bytes: &[u8]| nix::unistd::write(&writer, bytes).unwrap();
        write(&encode_record(41, libc::ENOENT));
        let second = encode_record(42, libc::EACCES);
        // Split in two, as a pipe never does: the rest waits for its bytes.
        write(&second[..3]);
        reports.collect();
        write(&second[3..]);
        reports.collect();
        let error = reports.take(Pid::from_raw(41)).unwrap();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(error.to_string(), "No such file or directory (os error 2)");
        assert_eq!(reports.take(Pid::from_raw(41)).map(|e| e.kind()), None);
        assert_eq!(
            reports.take(Pid::from_raw(42)).and_then(|e| e.raw_os_error()),
            Some(libc::EACCES)
        );
        assert!(reports.take(Pid::from_raw(43)).is_none());
    }

    /// Spawns for real, and waits for that one pid (a test is not the
    /// supervisor: its waitpid rule is about waitpid(-1)).
    fn run(launch: &Launch, base: &Vars) -> (i32, Option<io::Error>) {
        let mut reports = ExecReports::new().unwrap();
        let pid = spawn(launch, &[], base, Redirect::default(), &reports).unwrap();
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        let code = match status {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        };
        reports.collect();
        (code, reports.take(pid))
    }

    /// Whether `pid`'s plan and stack are still held, after a `reclaim`.
    fn in_flight(pid: Pid) -> bool {
        reclaim();
        let in_flight = IN_FLIGHT.lock().unwrap();
        in_flight.iter().any(|child| child.pid == pid.as_raw())
    }

    #[test]
    fn a_childs_plan_and_stack_are_freed_once_it_has_exec_d_not_when_it_exits() {
        let mut reports = ExecReports::new().unwrap();
        let sleeper = Launch::program(vec![os("/bin/sleep"), os("30")]);
        let pid = spawn(&sleeper, &[], &Vars::new(), Redirect::default(), &reports).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while in_flight(pid) {
            assert!(std::time::Instant::now() < deadline, "still held 10 s after the spawn");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Freed while the program runs: the exec let go of the memory.
        assert!(
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap()
                .starts_with("/bin/sleep")
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();

        // A child that fails before any exec lets go when it exits.
        let nowhere = Launch {
            cwd: Some(PathBuf::from("/no/such/dir")),
            ..Launch::program(vec![os("/bin/true")])
        };
        let pid = spawn(&nowhere, &[], &Vars::new(), Redirect::default(), &reports).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
        assert!(!in_flight(pid));
        reports.collect();
        assert_eq!(reports.take(pid).and_then(|e| e.raw_os_error()), Some(libc::ENOENT));
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

    #[test]
    fn a_failure_is_reported_when_the_notification_fd_takes_the_report_pipes_number() {
        let mut reports = ExecReports::new().unwrap();
        let (_reader, writer) = nix::unistd::pipe().unwrap();
        let redirect = Redirect {
            notify: Some((writer.as_fd(), reports.writer.as_raw_fd())),
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
}
