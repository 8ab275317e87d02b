//! The child's side of a start, from its clone (or fork) to its `execve`.
//! A child started by `clone(CLONE_VM)` runs in baseinit's memory beside
//! baseinit: it may only make `raw_syscall`'s calls, must not allocate,
//! take a lock or write anything but its stack and its plan, and must never
//! panic (an unwind there would run on baseinit's data). The lints below
//! refuse what could panic: indexing, `panic!`, `unwrap`, `expect`.
#![deny(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::RawFd;

use nix::libc;

use super::limits;
use super::plan::{Plan, SHELL};
use super::raw_syscall as sys;
use super::report;

/// Where a child started by `clone` begins, on its own stack: `arg` is the
/// `Plan` it was given, which stays allocated, and untouched by anyone
/// else, until the child lets go of baseinit's memory (see `in_flight`).
pub(super) extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: see above; `in_flight` passes nothing else.
    unsafe { exec_child(&mut *arg.cast::<Plan>()) }
}

/// The child, up to the exec: stdio, working directory, fds, process
/// group, `[limits]`, credentials, terminal, notification fd, signals,
/// then each file `plan` lists. Any failure is reported with its errno (and
/// which limit, for one of those), and the child exits 127. It runs in baseinit's memory while baseinit runs too, so: only the
/// calls of `raw_syscall` (libc's wrappers would write their errno into
/// baseinit's, and some take locks or, as `setuid` in a threaded process,
/// signal every thread), no allocation, no panic, and it writes nothing but
/// its own stack and plan: what it reads was built before it started.
/// Started by fork (where that clone is refused), it runs the same code on
/// a copy, where the same rules cost nothing.
///
/// # Safety
/// Call only in a child started by `in_flight` (by clone or fork), with
/// `plan` built by `Plan::build`.
pub(super) unsafe fn exec_child(plan: &mut Plan) -> ! {
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
        // `[limits]`, before the credentials: raising a hard limit or
        // lowering the nice value or the OOM score needs the privileges the
        // switch drops, and once the uid has changed /proc/self is root's
        // (the process is no longer dumpable), so oom_score_adj could not be
        // opened. Their own order: `limits::apply`.
        if let Some(limits) = &plan.limits
            && let Err((step, errno)) = limits::apply(limits)
        {
            report_step_and_exit(report, step, errno);
        }
        if let Some((uid, gid, groups)) = &plan.creds
            && let Err(errno) = sys::set_credentials(*uid, *gid, groups.as_deref())
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
                // Slot 1 exists: `Plan::build` makes the array with it.
                if let Some(slot) = plan.shell_argv.get_mut(1) {
                    *slot = file.as_ptr();
                }
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
/// Only in a child started by `in_flight` (see `exec_child`).
unsafe fn report_and_exit(report: RawFd, errno: i32) -> ! {
    // SAFETY: the caller's.
    unsafe { report_step_and_exit(report, limits::EXEC, errno) }
}

/// [`report_and_exit`], naming the step of `[limits]` that failed.
///
/// # Safety
/// Only in a child started by `in_flight` (see `exec_child`).
unsafe fn report_step_and_exit(report: RawFd, step: limits::Step, errno: i32) -> ! {
    // The pid from the kernel: nothing cached in the parent can be wrong.
    let record = report::encode_record(sys::getpid(), errno, step);
    // SAFETY: a local array. A failed write leaves the exit 127 unexplained;
    // there is nothing else to tell it through.
    let _ = unsafe { sys::write(report, &record) };
    sys::exit(127)
}

/// Default disposition for every signal up to `sigrtmax`, and an empty
/// mask. Only `raw_syscall`'s calls, so fit for a child (see `exec_child`).
/// The kernel's call, not libc's signal(): glibc refuses its reserved
/// signals 32 and 33, and an ignored one would otherwise pass on to every
/// child.
///
/// # Safety
/// It drops every handler of whoever calls it, with no way back: in
/// baseinit itself (which shares its handlers with no child: no
/// CLONE_SIGHAND) it would undo tokio's and the runtime's handling of
/// SIGCHLD, SIGTERM and the rest. Call it only in a child about to exec.
unsafe fn clean_signals(sigrtmax: i32) {
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
