//! The one owner of `waitpid`: drains every exited child, ours or adopted.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
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
pub fn drain() -> Drain {
    let mut drain = Drain::default();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => drain.reaped.push(ReapedChild {
                pid,
                status: ExitStatus::Exited(code),
            }),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => drain.reaped.push(ReapedChild {
                pid,
                status: ExitStatus::Signaled(signal as i32),
            }),
            Ok(WaitStatus::StillAlive) => break,
            // Stops and continues are not asked for; skip anything else.
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                drain.no_children = true;
                break;
            }
            Err(errno) => {
                tracing::error!("waitpid failed: {errno}");
                break;
            }
        }
    }
    drain
}
