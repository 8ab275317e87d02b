//! The one owner of `waitpid`: drains every exited child, ours or adopted.

use nix::libc;
use nix::unistd::Pid;

use crate::exit::ExitStatus;

/// A child that exited and was reaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReapedChild {
    pub pid: Pid,
    pub status: ExitStatus,
}

/// What one drain found.
#[derive(Debug, Default)]
pub struct Drain {
    pub reaped: Vec<ReapedChild>,
    /// waitpid said ECHILD: no child at all is left, alive or dead.
    pub no_children: bool,
}

/// Reaps every child that has exited, until none is left to reap. SIGCHLDs
/// coalesce, so one wake-up may stand for thousands of exits.
///
/// libc's waitpid, not nix's: nix turns the status into a `Signal` and fails
/// for real-time signals *after* the kernel has reaped the child, which would
/// lose that exit.
pub fn drain() -> Drain {
    let mut drain = Drain::default();
    loop {
        let mut raw = 0;
        // SAFETY: waitpid writes the status into a valid i32.
        let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
        if pid > 0 {
            if let Some(status) = decode(raw) {
                drain.reaped.push(ReapedChild {
                    pid: Pid::from_raw(pid),
                    status,
                });
            }
            continue;
        }
        if pid == 0 {
            break; // children remain, none has exited
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EINTR => continue,
            nix::errno::Errno::ECHILD => {
                drain.no_children = true;
                break;
            }
            errno => {
                tracing::error!("waitpid failed: {errno}");
                break;
            }
        }
    }
    drain
}

/// Decodes a raw wait status; None for anything but an exit or a signal death
/// (stops and continues are not asked for).
pub fn decode(raw: i32) -> Option<ExitStatus> {
    if libc::WIFEXITED(raw) {
        Some(ExitStatus::Exited(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        Some(ExitStatus::Signaled(libc::WTERMSIG(raw)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_wait_statuses() {
        assert_eq!(decode(0), Some(ExitStatus::Exited(0)));
        assert_eq!(decode(3 << 8), Some(ExitStatus::Exited(3)));
        assert_eq!(decode(9), Some(ExitStatus::Signaled(9)));
        assert_eq!(decode(9 | 0x80), Some(ExitStatus::Signaled(9)), "core dumped");
        assert_eq!(decode(34), Some(ExitStatus::Signaled(34)), "real-time signal");
        assert_eq!(decode(0x137f), None, "stopped by SIGSTOP");
        assert_eq!(decode(0xffff), None, "continued");
    }
}
