//! Starting a child, and the memory it runs on until its exec. By
//! `clone(CLONE_VM)` the child runs in baseinit's memory, on a stack of its
//! own, reading a plan baseinit keeps until the child has let go of that
//! memory (`InFlight`, [`reclaim`]). Where such a clone is refused, by
//! `fork`: the child then has a copy of everything and nothing stays in
//! flight. The first start decides which, for the process's life (`Start`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

use super::child;
use super::plan::{Plan, copy_out_of_dup_reach};

/// Starts the child of `plan`, beside this thread: baseinit goes on while
/// the child prepares and execs. Returns its pid.
pub(super) fn start_child(plan: Box<Plan>) -> io::Result<libc::pid_t> {
    reclaim();
    // An OOM score set in baseinit's memory would be baseinit's too.
    if plan.limits.as_ref().is_some_and(|limits| limits.needs_own_memory()) {
        return fork_copied(plan);
    }
    START.start(plan, clone_shared, fork_copied)
}

/// How children start, decided once, by the first start, for the process's
/// life: in baseinit's memory (the default, see `spawn`) or by fork.
pub(super) struct Start(AtomicU8);

const UNDECIDED: u8 = 0;
/// `clone(CLONE_VM)` works: children run in baseinit's memory.
const SHARED: u8 = 1;
/// It is refused: children start by fork.
const COPIED: u8 = 2;

static START: Start = Start::new();

/// Why a start in baseinit's memory failed.
pub(super) enum SharedError {
    /// Before the clone (its stack, its release pipe): an error like any
    /// other.
    Setup(io::Error),
    /// The clone itself; the plan comes back, for a fork.
    Clone(Box<Plan>, io::Error),
}

impl SharedError {
    fn into_error(self) -> io::Error {
        match self {
            SharedError::Setup(error) | SharedError::Clone(_, error) => error,
        }
    }
}

impl Start {
    pub(super) const fn new() -> Self {
        Start(AtomicU8::new(UNDECIDED))
    }

    /// Starts `plan` by `shared` (a clone in baseinit's memory) or by
    /// `copied` (a fork). The first clone decides. Refused for its flags
    /// (EINVAL: qemu's user-mode emulation, or a seccomp filter; ENOSYS or
    /// EPERM: a seccomp filter's usual answers), every start is a fork from
    /// then on. Once one has worked, a later failure is a real one (EAGAIN
    /// at a pids limit) and is reported as such, never a reason to fork.
    pub(super) fn start(
        &self,
        plan: Box<Plan>,
        shared: impl FnOnce(Box<Plan>) -> Result<libc::pid_t, SharedError>,
        copied: impl FnOnce(Box<Plan>) -> io::Result<libc::pid_t>,
    ) -> io::Result<libc::pid_t> {
        match self.0.load(Ordering::Relaxed) {
            SHARED => return shared(plan).map_err(SharedError::into_error),
            COPIED => return copied(plan),
            _ => {}
        }
        // valgrind does not fail such a clone: it ends the process
        // ("Unsupported clone() flags"). So it is asked first.
        if under_valgrind() {
            if self.decide(COPIED) {
                tracing::debug!(
                    "run by valgrind, which ends a process that clones with CLONE_VM: children start by fork"
                );
            }
            return copied(plan);
        }
        match shared(plan) {
            Ok(pid) => {
                self.decide(SHARED);
                Ok(pid)
            }
            Err(SharedError::Clone(plan, error))
                if matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EPERM)) =>
            {
                if self.decide(COPIED) {
                    tracing::debug!("clone(CLONE_VM) refused ({error}): children start by fork");
                } else if self.0.load(Ordering::Relaxed) != COPIED {
                    // A clone in shared memory has worked: this is no refusal.
                    return Err(error);
                }
                copied(plan)
            }
            Err(error) => Err(error.into_error()),
        }
    }

    /// Records `how`, unless a start has decided already: whether this one
    /// did.
    fn decide(&self, how: u8) -> bool {
        self.0
            .compare_exchange(UNDECIDED, how, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
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

/// Starts the child on a stack of its own in baseinit's memory (no
/// CLONE_VFORK where `raw_syscall` bypasses libc): its plan and stack stay
/// in flight until it has let go of that memory.
fn clone_shared(plan: Box<Plan>) -> Result<libc::pid_t, SharedError> {
    let stack = ChildStack::new().map_err(SharedError::Setup)?;
    let (released, keep) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| SharedError::Setup(e.into()))?;
    // The child must not close its write end before its exec, as a dup onto
    // that number would.
    let keep = match copy_out_of_dup_reach(keep.as_fd(), plan.notify.map(|(_, target)| target)) {
        Ok(copy) => copy.unwrap_or(keep),
        Err(error) => return Err(SharedError::Setup(error)),
    };
    let plan = Box::into_raw(plan);
    let flags = libc::CLONE_VM
        | libc::SIGCHLD
        | if super::raw_syscall::CONCURRENT {
            0
        } else {
            libc::CLONE_VFORK
        };
    let (pid, start_error) = with_signals_blocked(|| {
        // SAFETY: `entry` only makes raw syscalls on what `plan` holds and
        // never returns; libc's clone runs it on `stack` and touches nothing
        // else of ours in the child (no thread-local state with CLONE_VM).
        let pid = unsafe { libc::clone(child::entry, stack.top(), flags, plan.cast()) };
        (pid, io::Error::last_os_error())
    });
    // Now the child holds the only write end.
    drop(keep);
    if pid < 0 {
        // SAFETY: no child was made: nothing else uses the plan.
        return Err(SharedError::Clone(unsafe { Box::from_raw(plan) }, start_error));
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

/// Starts the child by fork: it runs the same code on its own copy of the
/// plan (and of all of baseinit's memory), so baseinit frees its plan at
/// once and nothing stays in flight. The copy costs what `spawn` says a
/// fork costs: only where a clone in shared memory is refused.
pub(super) fn fork_copied(mut plan: Box<Plan>) -> io::Result<libc::pid_t> {
    let (pid, error) = with_signals_blocked(|| {
        // SAFETY: the child only runs `exec_child`, which makes raw system
        // calls on its copy of the plan and never returns (all a child of a
        // process with threads may do); libc's fork minds its own locks.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: a child started by fork, with a plan from `Plan::build`.
            unsafe { child::exec_child(&mut plan) }
        }
        (pid, io::Error::last_os_error())
    });
    if pid < 0 { Err(error) } else { Ok(pid) }
}

/// Runs `start` with every signal blocked in this thread: the child must
/// run no handler of baseinit's (tokio's would write to baseinit's wake-up
/// pipe, in baseinit's memory) before `clean_signals` puts every
/// disposition back to its default (in the child's own table: no
/// CLONE_SIGHAND); it ends with an empty mask. A failure leaves the mask
/// as it was: nothing to do.
fn with_signals_blocked<T>(start: impl FnOnce() -> T) -> T {
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old)).is_ok();
    let started = start();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    started
}

/// Whether valgrind runs this process: its RUNNING_ON_VALGRIND request
/// (valgrind.h), rotations of a register that add up to whole turns, then
/// an exchange of a register with itself. On a CPU that does nothing and
/// the answer stays 0; valgrind's translator knows the sequence and answers
/// how many valgrinds run the program.
fn under_valgrind() -> bool {
    /// valgrind.h's VG_USERREQ__RUNNING_ON_VALGRIND.
    const RUNNING_ON_VALGRIND: usize = 0x1001;
    // The request and its five arguments, which valgrind reads.
    let request = [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0];
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        expect(unused_mut, reason = "written by the request where there is one")
    )]
    let mut answer: usize = 0;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdi ends as it began (3 + 13 + 61 + 51 bits: two whole
    // turns), rbx is exchanged with itself, rdx is declared; the rotations
    // change the carry and overflow flags (no `preserves_flags`).
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") request.as_ptr(),
            inout("rdx") answer,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: x12 ends as it began (3 + 13 + 51 + 61 bits: two whole
    // turns), x10 is or'ed with itself, x3 and x4 are declared.
    unsafe {
        std::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            inout("x3") answer,
            in("x4") request.as_ptr(),
            options(nostack, preserves_flags),
        );
    }
    let _ = &request;
    answer != 0
}

/// Whether `pid`'s plan and stack are held, after a `reclaim`.
#[cfg(test)]
pub(super) fn holds(pid: libc::pid_t) -> bool {
    reclaim();
    let in_flight = IN_FLIGHT.lock().unwrap();
    in_flight.iter().any(|child| child.pid == pid)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::ffi::OsString;
    use std::path::PathBuf;

    use nix::unistd::Pid;

    use super::*;
    use crate::container_env::Vars;
    use crate::spawn::{ExecReports, Launch, Redirect, spawn};

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    fn in_flight(pid: Pid) -> bool {
        holds(pid.as_raw())
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

    /// How a test's clone in shared memory ends.
    #[derive(Clone, Copy)]
    enum Clone {
        /// It works: pid 1000.
        Works,
        /// The clone call fails with this errno.
        Fails(i32),
        /// A step before it fails with this errno.
        SetupFails(i32),
    }

    /// What `start` tried for a start whose clone ends as `clone` says and
    /// whose fork gives pid 2000, and what it returned.
    fn try_start(start: &Start, clone: Clone) -> (Vec<&'static str>, Result<i32, Option<i32>>) {
        let reports = ExecReports::new().unwrap();
        let launch = Launch::program(vec![os("/bin/true")]);
        let (plan, _held) = Plan::build(&launch, &[], &Vars::new(), Redirect::default(), reports.writer()).unwrap();
        let tried = RefCell::new(Vec::new());
        let shared = |plan| {
            tried.borrow_mut().push("clone");
            match clone {
                Clone::Works => Ok(1000),
                Clone::Fails(errno) => Err(SharedError::Clone(plan, io::Error::from_raw_os_error(errno))),
                Clone::SetupFails(errno) => Err(SharedError::Setup(io::Error::from_raw_os_error(errno))),
            }
        };
        let copied = |_| {
            tried.borrow_mut().push("fork");
            Ok(2000)
        };
        let started = start
            .start(Box::new(plan), shared, copied)
            .map_err(|e| e.raw_os_error());
        (tried.into_inner(), started)
    }

    #[test]
    fn a_refused_first_clone_means_fork_from_then_on() {
        for errno in [libc::EINVAL, libc::ENOSYS, libc::EPERM] {
            let start = Start::new();
            assert_eq!(
                try_start(&start, Clone::Fails(errno)),
                (vec!["clone", "fork"], Ok(2000))
            );
            // No clone is tried again, whatever it would do.
            assert_eq!(try_start(&start, Clone::Works), (vec!["fork"], Ok(2000)));
            assert_eq!(try_start(&start, Clone::Fails(libc::EAGAIN)), (vec!["fork"], Ok(2000)));
        }
    }

    #[test]
    fn once_a_clone_has_worked_a_refusal_is_an_error() {
        let start = Start::new();
        assert_eq!(try_start(&start, Clone::Works), (vec!["clone"], Ok(1000)));
        for errno in [libc::EPERM, libc::EINVAL, libc::ENOSYS, libc::EAGAIN] {
            assert_eq!(
                try_start(&start, Clone::Fails(errno)),
                (vec!["clone"], Err(Some(errno)))
            );
        }
        assert_eq!(try_start(&start, Clone::Works), (vec!["clone"], Ok(1000)));
    }

    #[test]
    fn a_failure_that_is_no_refusal_decides_nothing() {
        let start = Start::new();
        // A pids limit, and a step before the clone, even with an errno a
        // refused clone gives: errors, no fork.
        assert_eq!(
            try_start(&start, Clone::Fails(libc::EAGAIN)),
            (vec!["clone"], Err(Some(libc::EAGAIN)))
        );
        assert_eq!(
            try_start(&start, Clone::SetupFails(libc::EINVAL)),
            (vec!["clone"], Err(Some(libc::EINVAL)))
        );
        // The next clone still decides.
        assert_eq!(
            try_start(&start, Clone::Fails(libc::ENOSYS)),
            (vec!["clone", "fork"], Ok(2000))
        );
        assert_eq!(try_start(&start, Clone::Works), (vec!["fork"], Ok(2000)));
    }

    #[test]
    fn the_valgrind_request_answers_no_on_a_real_cpu() {
        // (Run by valgrind, it answers yes: the CI's valgrind scenario.)
        assert!(!under_valgrind());
    }
}
