//! What baseinit inherited from whoever started it, cleaned up first thing:
//! the signal mask, dispositions that could kill or stop it, open fds.

use nix::libc;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};

/// Runs every clean-up; call before anything else starts.
pub fn clean_up() {
    unblock_signals();
    ignore_stray_signals();
    mark_fds_cloexec();
}

/// Unblocks every signal: a blocked SIGTERM or SIGCHLD inherited from the
/// parent would make PID 1 deaf.
fn unblock_signals() {
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        tracing::warn!("cannot clear the inherited signal mask: {e}");
    }
}

/// Signals baseinit has no use for must not kill or stop it. As PID 1 the
/// kernel drops them anyway; as a subreaper (`docker run --init`, a shell)
/// their default action would end it and orphan every service. Faults
/// (SEGV, BUS, FPE, ILL, ABRT, TRAP, SYS) keep their defaults. The signals
/// baseinit does handle get tokio's handlers later. Children start with every
/// disposition at its default again (see `spawn`).
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
