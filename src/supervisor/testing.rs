//! Test helpers for the supervisor's modules: units and tables without
//! processes.
//!
//! Test code only: `mod.rs` declares this module `#[cfg(test)]`.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::exit::ExitStatus;
use crate::service::Event;

use crate::service::{Backoff, FailurePolicy, Policy, RestartPolicy};
use crate::spawn::Launch;

use super::units::{Kind, Unit, UnitId, Units};

/// A service's policy with short timeouts.
pub fn policy() -> Policy {
    Policy {
        restart: RestartPolicy::Always,
        backoff: Backoff::DEFAULT,
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(1),
        finish_timeout: Duration::from_secs(1),
        has_finish: false,
        drain_group: true,
        failure: FailurePolicy::DEFAULT,
        run_timeout: None,
    }
}

/// A service unit named `name`, down.
pub fn service(name: &str) -> Unit {
    let mut unit = Unit::new(
        format!("service {name}"),
        Kind::Service,
        Launch::program(vec![name.into()]),
        None,
        policy(),
    );
    unit.name = name.to_owned();
    unit
}

/// A table of `units`, and their ids in order.
pub fn table(units: impl IntoIterator<Item = Unit>) -> (Units, Vec<UnitId>) {
    let mut table = Units::default();
    let ids = units.into_iter().map(|u| table.add(u, |_, _| false)).collect();
    (table, ids)
}

/// An fd to stand for a pipe end (a unit's `log_pipe`).
pub fn pipe_end() -> OwnedFd {
    let (reader, _) = nix::unistd::pipe().expect("pipe");
    reader
}

/// Unit `id` is wanted up and runs as `pid`.
pub fn start(units: &mut Units, id: UnitId, pid: i32, now: Instant) {
    units[id].life.on(Event::Up, now);
    units[id].life.on(Event::Spawned(Pid::from_raw(pid)), now);
}

/// Unit `id`'s run exits with `code` (its group empty).
pub fn exit(units: &mut Units, id: UnitId, code: i32, now: Instant) {
    let status = ExitStatus::Exited(code);
    units[id].life.on(
        Event::RunExited {
            status,
            group_empty: true,
        },
        now,
    );
}
