//! The supervisor's hands on processes: start, signal, reap, ask whether a
//! group is empty. Behind a trait so that tests drive the whole supervisor
//! with fake processes and a fake clock ([`System`] is the real one).

use std::ffi::OsString;
use std::io;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::container_env::Vars;
use crate::process_group;
use crate::reaper::{self, ReapedChild};
use crate::shutdown::{self, KillAll};
use crate::spawn::{self, ExecReports, Launch, Redirect, SpawnError};

/// Children that exited, each with why it never ran its program (a failed
/// exec, or a step before it), if it did not.
#[derive(Debug, Default)]
pub struct Reaped {
    pub children: Vec<(ReapedChild, Option<io::Error>)>,
    /// No child process is left at all.
    pub no_children: bool,
}

/// Everything the supervisor does to processes.
pub trait Processes {
    /// Starts `launch` with `extra_args` and environment `env` in a process
    /// group of its own; returns at once (see `spawn::spawn`).
    fn spawn(
        &mut self,
        launch: &Launch,
        extra_args: &[OsString],
        env: &Vars,
        redirect: Redirect<'_>,
    ) -> Result<Pid, SpawnError>;
    /// Signals the group `pgid`; `leader_unreaped`: its leader is our child
    /// still to be reaped, so it can be signalled alone if the group is gone.
    fn signal_group(&mut self, pgid: Pid, signal: Signal, leader_unreaped: bool);
    /// Signals one process (a signal forwarded to the main command).
    fn signal(&mut self, pid: Pid, signal: Signal) -> nix::Result<()>;
    /// Whether the group `pgid` has no member left.
    fn group_empty(&mut self, pgid: Pid) -> bool;
    /// Sends `signal` to everything `reach` covers.
    fn kill_all(&mut self, reach: KillAll, signal: Signal);
    /// The children that exited since the last call.
    fn reap(&mut self) -> Reaped;
    /// The real time, for scheduled services (`now` is the loop's clock:
    /// the tests' fake moves its real time with it).
    fn wall_clock(&mut self, _now: std::time::Instant) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}

/// The real thing: system calls.
#[derive(Default)]
pub struct System {
    /// How children report a failed exec; None until the event loop made it.
    pub reports: Option<ExecReports>,
}

impl Processes for System {
    fn spawn(
        &mut self,
        launch: &Launch,
        extra_args: &[OsString],
        env: &Vars,
        redirect: Redirect<'_>,
    ) -> Result<Pid, SpawnError> {
        let Some(reports) = &self.reports else {
            // The event loop makes the pipe before anything starts.
            return Err(SpawnError::new(launch, io::Error::other("no exec report pipe")));
        };
        spawn::spawn(launch, extra_args, env, redirect, reports)
    }

    fn signal_group(&mut self, pgid: Pid, signal: Signal, leader_unreaped: bool) {
        process_group::signal(pgid, signal, leader_unreaped);
    }

    fn signal(&mut self, pid: Pid, signal: Signal) -> nix::Result<()> {
        kill(pid, signal)
    }

    fn group_empty(&mut self, pgid: Pid) -> bool {
        process_group::is_empty(pgid)
    }

    fn kill_all(&mut self, reach: KillAll, signal: Signal) {
        shutdown::signal_remaining(reach, signal);
    }

    fn reap(&mut self) -> Reaped {
        let drain = reaper::drain();
        // After the drain, not before: a child writes its exec report before
        // it exits, so every child just reaped has its report (if any) in
        // the pipe now, while one read before the drain could miss a child
        // that failed in between.
        if let Some(reports) = &mut self.reports {
            reports.collect();
        }
        let children = drain
            .reaped
            .into_iter()
            // Taken for every reaped pid, ours or not, so none lingers.
            .map(|child| (child, self.reports.as_mut().and_then(|r| r.take(child.pid))))
            .collect();
        Reaped {
            children,
            no_children: drain.no_children,
        }
    }
}
