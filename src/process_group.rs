//! Process groups: signalling one, and telling when it is empty.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Sends `signal` to the group `pgid`. When the group is gone but its leader
/// lives (a `run` that moved itself to a new group or session), the leader
/// gets it instead; `leader_unreaped` must be true only while the leader's pid
/// is still ours (not yet reaped), or the pid could belong to someone else.
/// Returns false when nothing was signalled.
pub fn signal(pgid: Pid, signal: Signal, leader_unreaped: bool) -> bool {
    match killpg(pgid, signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) if leader_unreaped => kill(pgid, signal).is_ok(),
        Err(Errno::ESRCH) => false,
        Err(errno) => {
            tracing::warn!("cannot send {signal} to process group {pgid}: {errno}");
            false
        }
    }
}

/// True when no process (zombies included) is left in the group `pgid`.
pub fn is_empty(pgid: Pid) -> bool {
    killpg(pgid, None) == Err(Errno::ESRCH)
}
