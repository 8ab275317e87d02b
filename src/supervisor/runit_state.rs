//! Each unit's runit state: its `supervise/` directory (the lock, the
//! `control` FIFO `sv` writes and the state files `sv` reads), made and
//! written at the end of a wake-up rather than one file at a time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::runit::{self, RunState, Status, Supervise};
use crate::service::State;

use super::Supervisor;
use super::host::Processes;
use super::units::UnitId;

/// How long a shutdown goes without updating the services' runit state
/// (`supervise/stat`, `status`, `pid`). Each update is three file creations
/// and renames per service, which on a disk would be most of a short stop.
/// A stop that is over by then leaves the files as they were (the next boot
/// rewrites them); a longer one shows every service's state from then on,
/// and ends with them written.
const STATE_DURING_SHUTDOWN: Duration = Duration::from_millis(100);

/// How long one turn of the event loop goes on making supervise directories
/// before it looks at its events again. Each is six file creations: on a
/// busy disk, many services' worth in one turn would hold a `docker stop`
/// (and every reap) up. The rest are made in the next turns.
const SUPERVISE_PER_TURN: Duration = Duration::from_millis(5);

/// One unit's runit state.
#[derive(Default)]
pub struct RunitState {
    pub supervise: Option<Supervise>,
    /// When the runit-visible state last changed (runit's clock).
    since: Option<SystemTime>,
    /// The state and pid runit was last shown.
    seen: Option<(RunState, Option<i32>)>,
    /// `sv pause`'d.
    pub paused: bool,
    /// The current run got SIGTERM (runit's "got TERM").
    pub got_term: bool,
    /// A write failed already (warned once).
    write_failed: bool,
    /// The state changed and is in `RunitWrites::publish_due`.
    pub publish_queued: bool,
    /// The task reading `supervise/control`.
    pub control_task: Option<JoinHandle<()>>,
    /// The runit command a pending stop carries out (`sv down`, `sv exit`,
    /// and a shutdown, which is an exit): it decides which `control/`
    /// scripts run around the stop signal.
    pub stop_command: Option<crate::runit::Command>,
}

impl RunitState {
    /// Lets the directory go: its lock is released, its control FIFO unread.
    pub fn close(&mut self) {
        self.supervise = None;
        if let Some(task) = self.control_task.take() {
            task.abort();
        }
    }
}

/// What is left to write at the end of the current wake-up.
#[derive(Default)]
pub struct RunitWrites {
    /// Units whose state changed.
    publish_due: Vec<UnitId>,
    /// Supervise directories to make, for units that may be gone since.
    supervise_due: Vec<(UnitId, PathBuf)>,
}

impl RunitWrites {
    /// Makes `id`'s supervise directory in service directory `dir` once the
    /// wake-up's services have started: its lock, two FIFOs and state files
    /// are file creations that cost more than the spawn, and made first they
    /// would hold back every service after this one.
    pub fn open_later(&mut self, id: UnitId, dir: &Path) {
        self.supervise_due.push((id, dir.to_owned()));
    }

    /// Directories are still to be made: the loop takes another turn at once.
    pub fn pending(&self) -> bool {
        !self.supervise_due.is_empty()
    }
}

impl<P: Processes> Supervisor<P> {
    /// Marks unit `id`'s runit state as changed. The files are written once
    /// per wake-up, after every event of it is handled (`flush_published`):
    /// each write is three new inodes and renames, which cost more than the
    /// spawn itself.
    pub(super) fn publish(&mut self, id: UnitId) {
        let Some(unit) = self.units.get_mut(id) else {
            return;
        };
        if unit.runit.supervise.is_none() {
            // No file to write, but runit's clock runs on for `sv` over the
            // control socket.
            self.runit_status(id);
        } else if !std::mem::replace(&mut unit.runit.publish_queued, true) {
            self.runit.publish_due.push(id);
        }
    }

    /// Until when a shutdown leaves the runit state unwritten (see
    /// `STATE_DURING_SHUTDOWN`); None outside a shutdown.
    fn state_held_until(&self) -> Option<Instant> {
        self.phases.stop_started().map(|t| t + STATE_DURING_SHUTDOWN)
    }

    /// When the state held back by a shutdown is to be written.
    pub(super) fn state_deadline(&self) -> Option<Instant> {
        self.state_held_until().filter(|_| !self.runit.publish_due.is_empty())
    }

    /// Writes the runit state of every unit `publish` marked, except early in
    /// a shutdown.
    pub(super) fn flush_published(&mut self, now: Instant) {
        if self.state_held_until().is_some_and(|until| now < until) {
            return;
        }
        for id in std::mem::take(&mut self.runit.publish_due) {
            if let Some(unit) = self.units.get_mut(id) {
                unit.runit.publish_queued = false;
                self.write_state(id);
            }
        }
    }

    /// Writes unit `id`'s runit state, if it has a supervise directory.
    pub(super) fn write_state(&mut self, id: UnitId) {
        let Some(status) = self.runit_status(id) else {
            return;
        };
        let unit = &mut self.units[id];
        let runit = &mut unit.runit;
        let Some(sup) = &mut runit.supervise else {
            return;
        };
        if let Err(e) = sup.write(&status) {
            // Once per unit: a moved-away directory fails on every change.
            let dir = sup.dir().display();
            if std::mem::replace(&mut runit.write_failed, true) {
                debug!("{}: cannot write runit state in {dir}: {e}", unit.label);
            } else {
                warn!("{}: cannot write runit state in {dir}: {e}", unit.label);
            }
        }
    }

    /// Unit `id`'s state as runit shows it, its clock moved on when the state
    /// changed since last asked; None while a start is under way.
    pub(super) fn runit_status(&mut self, id: UnitId) -> Option<Status> {
        let unit = &mut self.units[id];
        let runit = &mut unit.runit;
        let (state, pid) = match unit.life.state() {
            // Transient within one event: the spawn's result follows at once.
            State::Starting => return None,
            State::Down | State::Backoff { .. } | State::Failed { .. } => (RunState::Down, None),
            State::Running { pid, .. } | State::Stopping { pid, .. } => (RunState::Run, Some(pid.as_raw())),
            State::Draining { .. } => (RunState::Finish, None),
            State::Finishing { pid, .. } => (RunState::Finish, pid.map(|p| p.as_raw())),
        };
        let previous = runit.seen.replace((state, pid));
        // runit's clock restarts when `run` starts and when the service goes
        // down, not when `finish` starts.
        let restarts_clock = match (state, previous) {
            (_, None) => true,
            (RunState::Run, Some(before)) => before != (RunState::Run, pid),
            (RunState::Down, Some((before, _))) => before != RunState::Down,
            (RunState::Finish, _) => false,
        };
        if restarts_clock || runit.since.is_none() {
            runit.since = Some(SystemTime::now());
        }
        Some(Status {
            since: runit.since.unwrap_or(SystemTime::UNIX_EPOCH),
            pid,
            paused: runit.paused,
            want_up: !unit.life.wants_down(),
            got_term: runit.got_term && state == RunState::Run,
            state,
        })
    }

    /// Makes the supervise directories `open_later` queued, for the units
    /// that still exist.
    ///
    /// At most [`SUPERVISE_PER_TURN`] of it: the rest waits for the next
    /// turn, after the events that came meanwhile. Once a shutdown has begun
    /// none is made any more: it would only slow the stop down, and `sv`
    /// says `runsv not running` for those services, as it would a moment
    /// later.
    pub(super) fn open_due_supervise(&mut self) {
        if self.phases.stop_started().is_some() {
            self.runit.supervise_due.clear();
            return;
        }
        // Real time, not the loop's `now`: this paces the loop's own work.
        let began = Instant::now();
        let mut due = std::mem::take(&mut self.runit.supervise_due).into_iter();
        for (id, dir) in due.by_ref() {
            if self.units.get(id).is_some_and(|u| !u.retired) {
                self.open_supervise(id, &dir);
            }
            if began.elapsed() >= SUPERVISE_PER_TURN {
                break;
            }
        }
        let mut rest: Vec<_> = due.collect();
        rest.append(&mut self.runit.supervise_due);
        self.runit.supervise_due = rest;
    }

    fn open_supervise(&mut self, id: UnitId, dir: &Path) {
        // A logger's name is NAME/log: its fallback state nests under its
        // service's, where baseinit's `sv` looks for it.
        let unit = &mut self.units[id];
        let runtime_dir = self.opts.runtime_dir.as_path();
        // Only when neither place will do: a non-root baseinit's own
        // directory (where its status socket goes too), made and checked
        // then, not for every service.
        let opened = Supervise::open(dir, &[runtime_dir], &unit.name).or_else(|failed| {
            match crate::control_socket::user_dir().filter(|own| crate::control_socket::own_dir(own).is_ok()) {
                Some(own) => Supervise::open(dir, &[&own], &unit.name),
                None => Err(failed),
            }
        });
        match opened {
            Ok((sup, control)) => {
                debug!("{}: runit state in {}", unit.label, sup.dir().display());
                unit.runit.supervise = Some(sup);
                match runit::open_control(&control) {
                    Ok(receiver) => {
                        let reader = runit::read_commands(receiver, control, id, self.commands.clone());
                        unit.runit.control_task = Some(tokio::spawn(reader));
                    }
                    Err(e) => warn!("{}: cannot read commands from {}: {e}", unit.label, control.display()),
                }
                self.publish(id);
            }
            Err(e) => warn!("{}: no runit state (sv cannot control it): {e}", unit.label),
        }
    }
}
