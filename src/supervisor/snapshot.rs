//! What `baseinit status` shows: every service, logger and the main
//! command, as the unit table has them now.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::exit::ExitStatus;
use crate::service::State;
use crate::shutdown::KillAll;
use crate::status;

use super::Supervisor;
use super::host::Processes;
use super::units::{Kind, Unit};

impl<P: Processes> Supervisor<P> {
    pub(super) fn snapshot(&self, now: Instant) -> status::Snapshot {
        let services = self
            .units
            .live()
            .filter(|(_, u)| matches!(u.kind, Kind::Service | Kind::Logger | Kind::Main))
            .map(|(_, u)| service_status(u, now))
            .chain(self.broken.iter().map(status::Broken::status))
            .collect();
        status::Snapshot {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid1: self.opts.kill_all == KillAll::Namespace || nix::unistd::getpid().as_raw() == 1,
            phase: self.phases.name().to_owned(),
            uptime_ms: millis(now.saturating_duration_since(self.started_at)),
            services,
            syslog: self.syslog.as_ref().map(crate::syslog::Relay::status),
        }
    }
}

fn service_status(u: &Unit, now: Instant) -> status::ServiceStatus {
    let last_exit = u.life.last_exit().map(|e| match e.status {
        Some(ExitStatus::Exited(code)) => status::LastExit::Code(code),
        Some(ExitStatus::Signaled(signal)) => status::LastExit::Signal(signal),
        None => status::LastExit::NotStarted,
    });
    status::ServiceStatus {
        name: if u.kind == Kind::Main {
            u.label.clone()
        } else {
            u.name.clone()
        },
        kind: match u.kind {
            Kind::Logger => "logger",
            Kind::Main => "main",
            _ => "service",
        }
        .to_owned(),
        state: if u.order.waiting {
            "waiting".to_owned()
        } else if u.order.held {
            "held".to_owned()
        } else if u.life.is_down() && u.schedule.as_ref().is_some_and(|t| t.enabled()) {
            // Between runs: waiting for its next time, not a failure.
            "scheduled".to_owned()
        } else {
            u.life.state_name().to_owned()
        },
        pid: u.life.run_pid().map(Pid::as_raw),
        uptime_ms: u.life.running_since().map(|t| millis(now.saturating_duration_since(t))),
        restarts: u.life.restarts(),
        last_exit,
        expected_up: (u.life.expected_up() || u.order.waiting || u.order.held) && u.leaving.is_none(),
        ready: u.probe.ready && matches!(u.life.state(), State::Running { .. }),
        // Why its last start failed (an env file or secret it could not
        // read, say), until one succeeds.
        reason: u.start_error.clone(),
        schedule: u.schedule.as_deref().map(super::scheduling::shown),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
