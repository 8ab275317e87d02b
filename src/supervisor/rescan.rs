//! The service directory applied: services added (with their loggers),
//! and on a rescan the changes [`changes`](super::changes) decides carried
//! out: new ones started, removed ones stopped and retired, changed ones
//! stopped and started again with their new definition.

use std::path::Path;
use std::time::Instant;

use tracing::{debug, error, info, warn};

use crate::config::{self, ServiceSpec};
use crate::service::Event;
use crate::status;

use super::Supervisor;
use super::changes::{self, Change};
use super::drain::{self, Ending};
use super::host::Processes;
use super::units::{Kind, Leaving, Unit, UnitId};

impl<P: Processes> Supervisor<P> {
    /// Adds a service (and its logger), queues their supervise directories,
    /// and starts them unless they have a `down` file (or `keep_down`).
    pub(super) fn add_service(&mut self, mut spec: ServiceSpec, keep_down: bool, now: Instant) {
        let log = spec.log.take();
        let down = match (spec.down, keep_down) {
            (true, _) => Some("has a `down` file"),
            (false, true) => Some("was down by sv before its definition changed"),
            (false, false) => None,
        };
        let (dir, name) = (spec.dir.clone(), spec.name.clone());
        // `[log]` and `log-line` need the lines through baseinit, whatever
        // `--output` says.
        let prefix =
            self.prefixed(spec.output) || ((spec.log_files.is_some() || spec.watches_output()) && self.sink.is_some());
        let id = self.add_unit(Unit::from_spec(Kind::Service, spec, prefix));
        if let Some(log) = log {
            match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                Ok((reader, writer)) => {
                    let log_down = log.down.then_some("has a `down` file");
                    let log_dir = log.dir.clone();
                    let prefix = self.prefixed(log.output) || (log.watches_output() && self.sink.is_some());
                    let logger = self.add_unit(Unit::from_spec(Kind::Logger, *log, prefix));
                    self.units[logger].log_pipe = Some(reader);
                    self.units[id].log_pipe = Some(writer);
                    self.units[id].logger = Some(logger);
                    // The logger first, so it reads from the first line on.
                    self.open_and_start(logger, &log_dir, log_down, now);
                }
                Err(e) => error!("service {name}: cannot create the log pipe: {e}; logging to stdout"),
            }
        }
        self.open_and_start(id, &dir, down, now);
    }

    /// Queues unit `id`'s supervise directory and starts it, unless it is to
    /// stay down (and `down` says why) or waits for its `after` services.
    fn open_and_start(&mut self, id: UnitId, dir: &Path, down: Option<&str>, now: Instant) {
        self.runit.open_later(id, dir);
        let unit = &mut self.units[id];
        if let Some(why) = down {
            info!("{}: {why}, not started", unit.label);
            self.publish(id);
        } else if !unit.after.is_empty() {
            debug!("{}: waiting for {}", unit.label, unit.after.join(", "));
            unit.order.waiting = true;
            self.publish(id);
        } else if unit.schedule.is_some() {
            self.enable_schedule(id, now);
        } else {
            self.feed(id, Event::Up, now);
        }
    }

    /// Applies the service directory as it is now: new services start,
    /// removed ones stop, changed ones restart with their new definition,
    /// unchanged ones are left alone. A broken definition is reported and the
    /// service keeps running as it was.
    pub(super) fn rescan(&mut self, now: Instant) {
        self.rescan_at = None;
        let scan = config::scan_services_in(
            &self.opts.service_dir,
            &self.opts.defaults,
            self.opts.service_dir_required,
            super::children::base_env(&self.env),
        );
        for problem in &scan.errors {
            error!("{problem}");
        }
        if !scan.errors.is_empty() {
            warn!(
                "{} problem(s) in the service definitions: {} left as they were",
                scan.errors.len(),
                if scan.broken.is_empty() {
                    "services".to_owned()
                } else {
                    scan.broken.join(", ")
                }
            );
        }
        let problems = broken_of(&scan);
        for change in changes::changes(&self.units, scan) {
            match change {
                Change::New(spec) => {
                    info!("service {}: new, starting", spec.name);
                    self.add_service(*spec, false, now);
                }
                Change::Back(id, spec) => {
                    info!("{}: back in the service directory, restarting it", self.units[id].label);
                    self.units[id].leaving = Some(Leaving::Replaced { spec, down: false });
                }
                Change::Newer(id, spec) => {
                    if let Some(Leaving::Replaced { spec: next, .. }) = &mut self.units[id].leaving {
                        *next = spec;
                    }
                }
                Change::Changed(id, spec, down) => {
                    info!("{}: definition changed, restarting it", self.units[id].label);
                    self.units[id].leaving = Some(Leaving::Replaced { spec, down });
                    self.feed(id, Event::Down, now);
                }
                Change::Gone(id) => {
                    let dir = self.opts.service_dir.display();
                    info!("{}: removed from {dir}, stopping it", self.units[id].label);
                    // Removed while being replaced: the replacement is off too.
                    self.units[id].leaving = Some(Leaving::Removed);
                    self.stop_after_dependents(id, now);
                }
            }
        }
        self.set_broken(problems);
        self.advance(now);
    }

    /// Remembers the services of `scan` that cannot run for their
    /// definitions (see [`Self::set_broken`]).
    pub(super) fn note_broken(&mut self, scan: &config::Scan) {
        self.set_broken(broken_of(scan));
    }

    /// The broken services `status` shows: those with no unit. One that
    /// runs keeps running on its last good definition, and says nothing.
    fn set_broken(&mut self, problems: Vec<(String, Vec<String>)>) {
        self.broken = problems
            .into_iter()
            .filter(|(name, _)| self.units.by_name(name).is_none())
            .map(|(name, problems)| status::Broken {
                reason: if problems.is_empty() {
                    // A cycle is reported once, at its first service.
                    "its definition has a problem (`baseinit check` says which)".to_owned()
                } else {
                    problems.join("; ")
                },
                name,
            })
            .collect();
    }

    /// Services stopped by a rescan: once down, their logger follows, and once
    /// both are down they are retired (and a changed one comes back).
    pub(super) fn finish_leaving(&mut self, now: Instant) {
        for id in self.units.ids() {
            let Some(unit) = self.units.get(id) else {
                continue; // its slot went to a service added just now
            };
            if unit.leaving.is_none() || unit.retired || !unit.life.is_down() {
                continue;
            }
            let mut ending = drain::ending(&self.units, id);
            if let Ending::CloseInput(logger) = ending {
                self.units[id].log_pipe = None;
                self.feed(logger, Event::Retire, now);
                ending = drain::ending(&self.units, id);
            }
            match ending {
                Ending::CloseInput(_) | Ending::LoggerBusy => continue,
                Ending::WithLogger(logger) => self.retire(logger),
                Ending::Alone => {}
            }
            self.retire(id);
            if let Some(Leaving::Replaced { spec, down }) = self.units[id].leaving.take() {
                self.add_service(*spec, down, now);
            }
        }
    }

    /// Stops supervising unit `id`: its name is free again, its state and
    /// descriptors dropped.
    pub(super) fn retire(&mut self, id: UnitId) {
        // Its last state (down) is written while it still has somewhere to go.
        if std::mem::take(&mut self.units[id].runit.publish_queued) {
            self.write_state(id);
        }
        let unit = &mut self.units[id];
        unit.runit.close();
        unit.log_pipe = None;
        if let Some(task) = unit.probe_task.take() {
            task.abort();
        }
        self.units.retire(id);
    }
}

/// Each broken service of `scan`, with its problems.
fn broken_of(scan: &config::Scan) -> Vec<(String, Vec<String>)> {
    scan.broken
        .iter()
        .map(|name| (name.clone(), scan.problems_of(name).map(ToString::to_string).collect()))
        .collect()
}
