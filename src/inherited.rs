//! What baseinit inherited from whoever started it, cleaned up first thing:
//! the signal mask, dispositions that could kill or stop it, open fds, and
//! the fd table's size (grown while baseinit is still single-threaded).
//!
//! The signals baseinit acts on are *held* (blocked) from the first moment
//! until their handlers exist, then released. As PID 1, a signal that arrives
//! while its disposition is still the default is discarded by the kernel, so
//! a `docker stop` in the first milliseconds would be lost; a blocked one
//! stays pending and is handled once the handlers are in place. Threads
//! started while the signals are held (the log thread) keep them blocked for
//! good, so every signal is taken by the event loop's thread.

use nix::libc;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};

/// The signals baseinit handles (see the signal table, docs/supervision.md).
const HANDLED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGCHLD,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Replaces the inherited signal mask with one that blocks exactly the
/// signals baseinit handles; call first thing, before any thread starts
/// (and first thing in a helper thread started later, so the event loop's
/// thread takes every signal). Every other inherited block is dropped here.
pub fn hold_signals() {
    let mut held = SigSet::empty();
    for sig in HANDLED {
        held.add(sig);
    }
    // Nothing is logged yet: this runs before logging starts, and it cannot
    // fail with a valid set and `how`.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&held), None);
}

/// Unblocks every signal on this thread, once the handlers exist: a blocked
/// SIGTERM or SIGCHLD (held, or inherited from the parent) would make PID 1
/// deaf. Signals that arrived meanwhile are delivered now.
pub fn release_signals() {
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        tracing::warn!("cannot clear the signal mask: {e}");
    }
}

/// The fd table size reserved at boot (see `reserve_fd_table`): room for
/// some 200 services' pipes and FIFOs.
const RESERVED_FDS: i32 = 1024;

/// Grows the kernel's fd table to `RESERVED_FDS` slots while baseinit is
/// still single-threaded; call before any thread starts. The table starts
/// with 64 slots and doubles when an fd number needs it, and in a process
/// with threads each growth waits for an RCU grace period
/// (`synchronize_rcu`), which would stall the boot in the middle of
/// starting its services (each takes a few fds). Grown now, it costs
/// nothing; it never shrinks, and holds 8 bytes per slot of kernel memory.
/// Best effort: below the fd limit, and not at all if it fails.
pub fn reserve_fd_table() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let highest = RESERVED_FDS.min(i32::try_from(limit.rlim_cur).unwrap_or(i32::MAX)) - 1;
    if highest < 64 {
        return;
    }
    // SAFETY: plain syscalls; the copy is closed at once. F_DUPFD takes the
    // lowest free number at or above `highest`, growing the table for it;
    // stderr may be closed, so any of 0-2 will do as the original.
    unsafe {
        for fd in 0..=2 {
            let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, highest);
            if copy >= 0 {
                libc::close(copy);
                return;
            }
        }
    }
}

/// Runs every clean-up; call before anything else starts.
pub fn clean_up() {
    ignore_stray_signals();
    mark_fds_cloexec();
}

/// Signals baseinit has no use for must not kill or stop it. As PID 1 the
/// kernel drops them anyway; as a subreaper (`docker run --init`, a shell)
/// their default action would end it and orphan every service. Faults
/// (SEGV, BUS, FPE, ILL, ABRT, TRAP, SYS) keep their defaults. The signals
/// baseinit does handle get tokio's handlers later. Children start with every
/// disposition at its default again (see `spawn`). SIGIO is also what the
/// service watch's dnotify pins would send (see `watch`): ignored, it is
/// dropped by the kernel as it is sent.
fn ignore_stray_signals() {
    use Signal::*;
    let stray = [
        SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE,
    ];
    for sig in stray {
        // SAFETY: SIG_IGN installs no handler code.
        if let Err(e) = unsafe { signal(sig, SigHandler::SigIgn) } {
            tracing::warn!("cannot ignore {sig}: {e}");
        }
    }
    for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

/// Marks every fd above 2 close-on-exec, so no child inherits one.
fn mark_fds_cloexec() {
    // SAFETY: a plain syscall; on failure (kernel < 5.11) fall back to /proc.
    let done = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0;
    if done {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on an fd number; a closed one fails with EBADF.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}
