//! Starting a child in baseinit's memory, by `clone(CLONE_VM)`, and that
//! memory until its exec: the child runs on a stack of its own, reading a
//! plan baseinit keeps until the child has let go of baseinit's memory
//! (`InFlight`, [`reclaim`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

use super::child;
use super::plan::{Plan, copy_out_of_dup_reach};

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

/// Starts the child on a stack of its own in baseinit's memory, beside this
/// thread (no CLONE_VFORK where `raw_syscall` bypasses libc): baseinit goes
/// on while the child prepares and execs. Returns its pid.
pub(super) fn start_child(plan: Box<Plan>) -> io::Result<libc::pid_t> {
    reclaim();
    let stack = ChildStack::new()?;
    let (released, keep) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // The child must not close its write end before its exec, as a dup onto
    // that number would.
    let keep = copy_out_of_dup_reach(keep.as_fd(), plan.notify.map(|(_, target)| target))?.unwrap_or(keep);
    let plan = Box::into_raw(plan);
    let flags = libc::CLONE_VM
        | libc::SIGCHLD
        | if super::raw_syscall::CONCURRENT {
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
    let pid = unsafe { libc::clone(child::entry, stack.top(), flags, plan.cast()) };
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

/// Whether `pid`'s plan and stack are held, after a `reclaim`.
#[cfg(test)]
pub(super) fn holds(pid: libc::pid_t) -> bool {
    reclaim();
    let in_flight = IN_FLIGHT.lock().unwrap();
    in_flight.iter().any(|child| child.pid == pid)
}

#[cfg(test)]
mod tests {
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
}
