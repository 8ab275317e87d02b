//! Scheduled services, acted on: a timer armed when its service comes up,
//! each due time turned into a run (runit's `sv once`: the service's own
//! `run`, environment, user and output, never restarted), a skip or a
//! queued run; a run's end noted; and `sv` for them. What to do is
//! [`schedule`](super::schedule)'s to decide.

use std::time::Instant;

use chrono::SecondsFormat;
use tracing::{info, warn};

use crate::config::Overlap;
use crate::exit::ExitStatus;
use crate::runit::Command;
use crate::service::Event;
use crate::status;

use super::Supervisor;
use super::host::Processes;
use super::schedule::{Due, Timer};
use super::units::UnitId;

impl<P: Processes> Supervisor<P> {
    /// Scheduled unit `id` is up (boot, a rescan, `sv up`): its times start
    /// runs from now on.
    pub(super) fn enable_schedule(&mut self, id: UnitId, now: Instant) {
        let wall = self.processes.wall_clock(now);
        let unit = &mut self.units[id];
        let Some(timer) = &mut unit.schedule else {
            return;
        };
        let next = timer.enable(now, wall);
        let (expression, zone) = (&timer.schedule().expression, timer.zone_name());
        match next {
            Some(next) => info!(
                "{}: runs at `{expression}` ({zone}); next at {}",
                unit.label,
                next.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            None => warn!(
                "{}: `{expression}` ({zone}) has no time left: it never runs",
                unit.label
            ),
        }
        self.publish(id);
    }

    /// The deadlines of the timers due by `now`: a run, a skip or a queued
    /// run each. A timer that can start nothing now (a shutdown, its
    /// service being removed or replaced) is disarmed instead, so that no
    /// deadline stays behind the loop's clock.
    pub(super) fn fire_schedules(&mut self, now: Instant) {
        let running = self.phases.is_running();
        for id in self.units.ids() {
            let unit = &self.units[id];
            let Some(timer) = unit.schedule.as_deref() else {
                continue;
            };
            if timer.deadline().is_none_or(|at| at > now) {
                continue;
            }
            let busy = !unit.life.is_down();
            let active = running && !unit.retired && unit.leaving.is_none();
            let wall = self.processes.wall_clock(now);
            let unit = &mut self.units[id];
            let Some(timer) = unit.schedule.as_deref_mut() else {
                continue;
            };
            if !active {
                timer.disable();
                continue;
            }
            let Some(fired) = timer.on_deadline(now, wall, busy) else {
                continue;
            };
            let at = fired.at.to_rfc3339_opts(SecondsFormat::Secs, true);
            let why = match timer.schedule().overlap {
                Overlap::Skip => "overlap = \"skip\"",
                Overlap::Queue => "one run is queued already",
            };
            match fired.due {
                Due::Start => self.start_scheduled(id, now),
                Due::Skip => warn!("{}: still running at {at}: this run is skipped ({why})", unit.label),
                Due::Queue => info!(
                    "{}: still running at {at}: the next run starts when it ends (overlap = \"queue\")",
                    unit.label
                ),
            }
        }
    }

    /// Starts a run of scheduled unit `id` now.
    fn start_scheduled(&mut self, id: UnitId, now: Instant) {
        let wall = self.processes.wall_clock(now);
        if let Some(timer) = self.units[id].schedule.as_deref_mut() {
            timer.on_run_started(wall);
        }
        // Once: run, then down, whatever the exit (the lifecycle's `sv once`).
        self.feed(id, Event::Once, now);
        if self.units[id].life.is_down() {
            // It could not start at all: ended already.
            self.scheduled_run_ended(id, now);
        }
    }

    /// After each wake-up's events: the scheduled runs that ended are
    /// noted, and a queued run starts.
    pub(super) fn scheduled_runs_ended(&mut self, now: Instant) {
        for id in self.units.ids() {
            let unit = &self.units[id];
            if unit.life.is_down() && unit.schedule.as_deref().is_some_and(Timer::running) {
                self.scheduled_run_ended(id, now);
            }
        }
    }

    /// Scheduled unit `id`'s run ended (it is down): noted, and the queued
    /// run, if any, started.
    fn scheduled_run_ended(&mut self, id: UnitId, now: Instant) {
        let may_start = self.phases.is_running();
        let unit = &mut self.units[id];
        let Some(timer) = unit.schedule.as_deref_mut() else {
            return;
        };
        let status = unit.life.last_exit().and_then(|e| e.status);
        let success = status.is_some_and(ExitStatus::success);
        let queued = timer.on_run_ended(success);
        let next = match timer.next_time() {
            Some(at) if may_start => format!("; next at {}", at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            _ => String::new(),
        };
        let how = status.map_or("it could not start".to_owned(), |s| s.to_string());
        if success {
            info!("{}: run done{next}", unit.label);
        } else {
            warn!("{}: run failed ({how}){next}", unit.label);
        }
        if queued && may_start && !unit.retired && unit.leaving.is_none() {
            info!("{}: starting the queued run", unit.label);
            self.start_scheduled(id, now);
        }
    }

    /// `sv` for a scheduled service: `up` turns its times on, `once` runs
    /// it now (or as `overlap` says while a run goes), `down` and `exit`
    /// turn its times off and then stop a run as for any service. True when
    /// the command is carried out here.
    pub(super) fn schedule_command(&mut self, id: UnitId, command: Command, now: Instant) -> bool {
        let stopping = self.phases.is_shutting_down();
        let unit = &mut self.units[id];
        let Some(timer) = unit.schedule.as_deref_mut() else {
            return false;
        };
        match command {
            // Refused by the general rules, with their message.
            Command::Up | Command::Once if stopping || unit.leaving.is_some() => false,
            Command::Up => {
                unit.runit.stop_command = None;
                self.enable_schedule(id, now);
                true
            }
            Command::Once => {
                let busy = !unit.life.is_down();
                match timer.on_demand(busy) {
                    Due::Start => {
                        info!("{}: sv once: a run now", unit.label);
                        self.start_scheduled(id, now);
                    }
                    Due::Skip => warn!("{}: sv once: a run goes already: not another", unit.label),
                    Due::Queue => info!("{}: sv once: the run starts when the current one ends", unit.label),
                }
                self.publish(id);
                true
            }
            Command::Down | Command::Exit => {
                info!("{}: sv {command:?}: no more runs until sv up", unit.label);
                timer.disable();
                false
            }
            Command::Pause | Command::Continue | Command::Signal(_) => false,
        }
    }
}

/// What `status` shows of a timer.
pub(super) fn shown(timer: &Timer) -> status::ScheduleStatus {
    let shown = timer.shown();
    status::ScheduleStatus {
        expression: timer.schedule().expression.clone(),
        time_zone: timer.zone_name().to_owned(),
        overlap: match timer.schedule().overlap {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
        .to_owned(),
        next_run: shown.next_run,
        last_run_start: shown.last_run_start,
        runs: shown.runs,
        skipped: shown.skipped,
        queued: shown.queued,
        failed: shown.unhealthy,
    }
}
