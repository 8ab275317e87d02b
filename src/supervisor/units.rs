//! The unit table: every unit baseinit starts and watches, each named by a
//! [`UnitId`] that also tells it from the units that held its slot before.
//!
//! A unit is a startup script, a service, a service's `log/` logger, a
//! shutdown hook or the main command. They share one lifecycle machine; only
//! their policies differ. A unit's state is grouped by the module that
//! decides about it: [`OrderFlags`] (dependency order), [`ProbeSchedule`]
//! (readiness and health), [`RunitState`] (the `supervise/` files); the
//! table itself decides nothing.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::unistd::Pid;
use tokio::task::JoinHandle;

use crate::config::{Readiness, ServiceSpec};
use crate::exit::SpawnFailure;
use crate::runit::Command;
use crate::service::{Lifecycle, Policy};
use crate::spawn::Launch;

use super::order::OrderFlags;
use super::probes::ProbeSchedule;
use super::runit_state::RunitState;

/// A unit as named everywhere: in the pid table, in the messages of helper
/// tasks (which may arrive after it is gone), in the phases. Its slot, and
/// the generation that holds it: a later unit in the same slot is another id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnitId {
    index: usize,
    generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Service,
    Logger,
    Hook,
    Main,
}

/// What a process of a unit is to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Run,
    Finish,
    /// A probe of the run with pid `run`: its `[health]` command, or its
    /// readiness one (`[ready] command`, `check`).
    Probe {
        run: Pid,
        health: bool,
    },
    /// A `control/` script, `control/LETTER`.
    Control {
        letter: char,
        script: ControlScript,
    },
}

/// What a `control/` script's exit means (runit's runsv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlScript {
    /// `control/C` in place of command C: exit 0 handled it; otherwise the
    /// command's default follows.
    Instead(Command),
    /// `control/t` at a stop (`sv down`, `sv exit`, a shutdown): exit 0
    /// stopped the service its own way (no stop signal); then `control/`
    /// `after` (`d` or `x`) runs.
    Stop { after: char },
    /// `control/d` or `control/x` after a stop: its exit status is ignored.
    AfterStop,
}

/// Being replaced (changed definition) or removed by a rescan: what comes
/// after it settles.
pub enum Leaving {
    Removed,
    /// The latest definition, and whether it starts down (an operator's
    /// `sv down` of the old one carries over).
    Replaced {
        spec: Box<ServiceSpec>,
        down: bool,
    },
}

pub struct Unit {
    /// For logs: "service web", "startup script /etc/my_init.d/10_x", "main command sh".
    pub label: String,
    pub kind: Kind,
    /// The service's name ("web", "web/log"); empty for other kinds.
    pub name: String,
    /// The service directory (for `control/`, probes' working directory);
    /// None for other kinds.
    pub dir: Option<PathBuf>,
    pub fingerprint: u64,
    /// `essential = true`.
    pub essential: bool,
    /// Started after these are ready, stopped before them.
    pub after: Vec<String>,
    /// Stopped when one of these goes down for good.
    pub requires: Vec<String>,
    pub readiness: Readiness,
    /// `[health]`: probed once the run is ready.
    pub health: Option<Readiness>,
    pub run: Launch,
    pub finish: Option<Launch>,
    /// Its output is prefixed: each of its processes gets fresh pipes for
    /// stdout and stderr, read by baseinit (see `output`).
    pub prefix: bool,
    /// `[log]`: its lines also (or only) go to this log directory.
    pub log_files: Option<std::sync::Arc<crate::config::LogFiles>>,
    pub life: Lifecycle,
    pub order: OrderFlags,
    pub probe: ProbeSchedule,
    /// A notification-fd, sd_notify or TCP readiness task for the current run.
    pub probe_task: Option<JoinHandle<()>>,
    pub runit: RunitState,
    /// Why the last start failed, if it did.
    pub spawn_failure: Option<SpawnFailure>,
    /// Why its last start failed, for `status`, until one succeeds.
    pub start_error: Option<String>,
    /// `env-file`, `env-dir` and `[secrets]`, read at each start of its
    /// run and finish.
    pub env_sources: Option<crate::config::EnvSources>,
    /// A service's logger.
    pub logger: Option<UnitId>,
    /// A service with a logger: our copy of the pipe's write end, its run's
    /// and finish's stdout. Dropped once the service is down for good, so the
    /// logger reads to EOF. A logger: the read end, its stdin.
    pub log_pipe: Option<OwnedFd>,
    /// A retired logger run again to empty its pipe: how many bytes the pipe
    /// held before the last such run (each run must make progress).
    pub drained_from: Option<i32>,
    pub leaving: Option<Leaving>,
    /// Gone: no longer supervised. Its slot may be reused (see `Units::add`).
    pub retired: bool,
    /// `schedule`: its runs are started by this timer, not at boot.
    pub schedule: Option<Box<super::schedule::Timer>>,
}

impl Unit {
    /// A unit that runs `run` under `policy`, with nothing else set.
    pub fn new(label: String, kind: Kind, run: Launch, finish: Option<Launch>, policy: Policy) -> Self {
        Unit {
            label,
            kind,
            name: String::new(),
            dir: None,
            fingerprint: 0,
            essential: false,
            after: Vec::new(),
            requires: Vec::new(),
            readiness: Readiness::started(),
            health: None,
            run,
            finish,
            prefix: false,
            log_files: None,
            life: Lifecycle::new(policy),
            order: OrderFlags::default(),
            probe: ProbeSchedule::default(),
            probe_task: None,
            runit: RunitState::default(),
            spawn_failure: None,
            start_error: None,
            env_sources: None,
            logger: None,
            log_pipe: None,
            drained_from: None,
            leaving: None,
            retired: false,
            schedule: None,
        }
    }

    /// A unit for a service or logger definition (its `log` taken out).
    pub fn from_spec(kind: Kind, spec: ServiceSpec, prefix: bool) -> Self {
        let mut unit = Unit::new(
            format!("service {}", spec.name),
            kind,
            spec.run,
            spec.finish,
            spec.policy,
        );
        unit.name = spec.name;
        unit.dir = Some(spec.dir);
        unit.fingerprint = spec.fingerprint;
        unit.essential = spec.essential;
        unit.after = spec.after;
        unit.requires = spec.requires;
        unit.readiness = spec.readiness;
        unit.health = spec.health;
        unit.env_sources = spec.env_sources;
        unit.prefix = prefix;
        unit.log_files = spec.log_files.map(std::sync::Arc::new);
        unit.schedule = spec.schedule.map(|s| {
            let (zone, name) = super::schedule::Zone::container();
            Box::new(super::schedule::Timer::new(s, zone, name))
        });
        unit
    }

    /// A service or its logger, as opposed to a script, hook or main command.
    pub fn is_supervised(&self) -> bool {
        matches!(self.kind, Kind::Service | Kind::Logger)
    }
}

struct Slot {
    generation: u64,
    unit: Unit,
}

/// Every unit, in slots that retired units leave for new ones, and the
/// active services and loggers by name.
#[derive(Default)]
pub struct Units {
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    /// The last generation handed out.
    generation: u64,
}

impl Units {
    /// Adds `unit`, in the slot of a retired unit when `reusable` allows one
    /// (so that services added and removed for months do not grow PID 1's
    /// memory), and registers its name if it has one.
    pub fn add(&mut self, unit: Unit, reusable: impl Fn(UnitId, &Unit) -> bool) -> UnitId {
        self.generation += 1;
        let free = self
            .iter()
            .find(|(id, u)| u.retired && reusable(*id, u))
            .map(|(id, _)| id.index);
        let index = match free {
            Some(index) => {
                let old = UnitId {
                    index,
                    generation: self.slots[index].generation,
                };
                // Retired services that named it as their logger forget it.
                for slot in &mut self.slots {
                    if slot.unit.logger == Some(old) {
                        slot.unit.logger = None;
                    }
                }
                self.slots[index] = Slot {
                    generation: self.generation,
                    unit,
                };
                index
            }
            None => {
                self.slots.push(Slot {
                    generation: self.generation,
                    unit,
                });
                self.slots.len() - 1
            }
        };
        let name = &self.slots[index].unit.name;
        if !name.is_empty() {
            self.by_name.insert(name.clone(), index);
        }
        UnitId {
            index,
            generation: self.generation,
        }
    }

    /// The unit `id` names, if it is still the one in its slot (retired or
    /// not): a message about a unit gone since finds nothing.
    pub fn get(&self, id: UnitId) -> Option<&Unit> {
        self.slots
            .get(id.index)
            .filter(|s| s.generation == id.generation)
            .map(|s| &s.unit)
    }

    pub fn get_mut(&mut self, id: UnitId) -> Option<&mut Unit> {
        self.slots
            .get_mut(id.index)
            .filter(|s| s.generation == id.generation)
            .map(|s| &mut s.unit)
    }

    /// The live (not retired) service or logger called `name`.
    pub fn by_name(&self, name: &str) -> Option<UnitId> {
        self.by_name.get(name).map(|&index| UnitId {
            index,
            generation: self.slots[index].generation,
        })
    }

    /// Every unit, retired ones included, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (UnitId, &Unit)> {
        self.slots.iter().enumerate().map(|(index, s)| {
            (
                UnitId {
                    index,
                    generation: s.generation,
                },
                &s.unit,
            )
        })
    }

    /// The units not retired, in slot order.
    pub fn live(&self) -> impl Iterator<Item = (UnitId, &Unit)> {
        self.iter().filter(|(_, u)| !u.retired)
    }

    /// Every id, for loops that change units as they go.
    pub fn ids(&self) -> Vec<UnitId> {
        self.iter().map(|(id, _)| id).collect()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Unit> {
        self.slots.iter_mut().map(|s| &mut s.unit)
    }

    /// Marks `id` retired and frees its name for a successor.
    pub fn retire(&mut self, id: UnitId) {
        let Some(unit) = self.get_mut(id) else {
            return;
        };
        unit.retired = true;
        let name = unit.name.clone();
        if self.by_name.get(&name) == Some(&id.index) {
            self.by_name.remove(&name);
        }
    }
}

/// Ids come only from this table and slots are never removed, so an id's
/// slot always exists; a stale id (its slot since reused) reaches the new
/// unit, which is why messages that can outlive a unit use [`Units::get`].
impl std::ops::Index<UnitId> for Units {
    type Output = Unit;
    fn index(&self, id: UnitId) -> &Unit {
        debug_assert_eq!(self.slots[id.index].generation, id.generation, "stale unit id");
        &self.slots[id.index].unit
    }
}

impl std::ops::IndexMut<UnitId> for Units {
    fn index_mut(&mut self, id: UnitId) -> &mut Unit {
        debug_assert_eq!(self.slots[id.index].generation, id.generation, "stale unit id");
        &mut self.slots[id.index].unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::Launch;

    fn policy() -> Policy {
        crate::supervisor::testing::policy()
    }

    fn service(name: &str) -> Unit {
        let mut unit = Unit::new(
            format!("service {name}"),
            Kind::Service,
            Launch::program(vec![]),
            None,
            policy(),
        );
        unit.name = name.to_owned();
        unit
    }

    #[test]
    fn a_retired_slot_is_reused_under_a_new_id_and_the_old_id_finds_nothing() {
        let mut units = Units::default();
        let a = units.add(service("a"), |_, _| true);
        let b = units.add(service("b"), |_, _| true);
        assert_eq!(units.by_name("a"), Some(a));
        units.retire(a);
        assert_eq!(units.by_name("a"), None);
        assert!(units.get(a).is_some_and(|u| u.retired), "retired, still there");
        let c = units.add(service("c"), |_, _| true);
        assert_ne!(c, a);
        assert!(units.get(a).is_none(), "the old id is stale");
        assert_eq!(units[c].name, "c");
        assert_eq!(units.iter().count(), 2, "the slot was reused: {b:?} and {c:?}");
    }

    #[test]
    fn a_busy_retired_slot_is_not_reused() {
        let mut units = Units::default();
        let a = units.add(service("a"), |_, _| true);
        units.retire(a);
        let b = units.add(service("b"), |id, _| id != a);
        assert_eq!(units.iter().count(), 2);
        assert_eq!(units.by_name("b"), Some(b));
    }

    #[test]
    fn a_reused_slot_is_forgotten_as_a_logger() {
        let mut units = Units::default();
        let log = units.add(service("a/log"), |_, _| true);
        let svc = units.add(service("a"), |_, _| true);
        units[svc].logger = Some(log);
        units.retire(log);
        units.retire(svc);
        let _ = units.add(service("b"), |id, _| id == log);
        assert_eq!(units.get(svc).and_then(|u| u.logger), None);
    }
}
