//! The container's phases, decided: the startup scripts one at a time, then
//! the services and the main command; on a stop (a signal, the main
//! command's end, an essential service's, a failed boot) the pre-shutdown
//! hooks, the ordered stop of every unit, the post-shutdown hooks, the
//! kill-all, and exit; and the exit code all that comes to.
//!
//! Pure: [`Phases::next`] reads the unit table and returns the next
//! [`Step`] for the supervisor to carry out (start a script, list the hooks,
//! stop the units, signal what is left), one at a time, until it says
//! [`Step::Wait`]. No clock is read here: every call is given `now`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::{debug, error, info, warn};

use crate::exit::{ExitStatus, Outcome};
use crate::service::KILL_WAIT;
use crate::shutdown::{KillAll, StopPlan};

use super::order;
use super::units::{Kind, UnitId, Units};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookStage {
    Pre,
    Post,
}

/// Why the container stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Signal(Signal),
    MainExited,
    BootFailed,
    /// An essential service ended for good, or a service failed with
    /// `on-failure = "exit"`.
    ServiceEnded(UnitId),
}

#[derive(Debug)]
pub enum Phase {
    /// Startup scripts, one at a time.
    Startup {
        pending: VecDeque<PathBuf>,
        current: Option<UnitId>,
    },
    Running,
    /// Shutdown hooks, one at a time (`pending` is None until the stage's
    /// directory is listed), the stage as a whole done by `until`.
    Hooks {
        stage: HookStage,
        pending: Option<VecDeque<PathBuf>>,
        current: Option<UnitId>,
        until: Instant,
    },
    /// `--shutdown-delay`, after the pre-shutdown hooks: the services run
    /// on (the phase reads `stopping`, so `health` says unhealthy) until
    /// then, or until a second stop signal.
    Delay {
        until: Instant,
    },
    Stopping(StopPlan),
    /// The final kill-all: `signal` was sent; the next step is at `until`.
    KillAll {
        signal: Signal,
        until: Instant,
    },
    Done,
}

/// What the command line says of the shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// What each hook stage (pre, post) may take.
    pub hook_timeout: Duration,
    /// How long a stop by signal keeps the services running, unready.
    pub shutdown_delay: Duration,
    pub kill_all: KillAll,
    /// From the kill-all's SIGTERM to its SIGKILL.
    pub kill_all_grace: Duration,
}

/// What the supervisor is to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing until the next event.
    Wait,
    /// Start this startup script, then say which unit it is (`started`).
    RunScript(PathBuf),
    /// A startup script succeeded: what it changed of the container
    /// environment counts for everything started after it.
    ReloadEnv,
    /// The startup scripts are done: load and start the services, then the
    /// main command (`main_added`).
    StartServices,
    /// `--wait-for-services`: every service is ready, start the main command.
    StartMain,
    /// List this stage's hooks, then hand them over (`hooks_listed`).
    ListHooks(HookStage),
    /// Start this hook, then say which unit it is (`started`).
    RunHook(PathBuf),
    /// The pre-shutdown hooks are done: stop every unit, in order.
    StopUnits,
    /// Send this signal to everything the kill-all reaches.
    KillAll(Signal),
}

/// What a deadline passing asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// The hook stage's budget is spent and this hook still runs: stop it.
    StopHook(UnitId),
    /// The kill-all's grace is over: SIGKILL to everything left.
    KillAll(Signal),
}

pub struct Phases {
    phase: Phase,
    settings: Settings,
    reason: Option<StopReason>,
    stop_started: Option<Instant>,
    /// The shutdown delay this shutdown still owes (zero once cut short, and
    /// for a stop that is not by signal while running).
    delay: Duration,
    main: Option<UnitId>,
    /// The main command waits for the services until then, or (None)
    /// without limit (`--wait-for-services`).
    main_waits: Option<Option<Instant>>,
}

impl Phases {
    pub fn new(settings: Settings) -> Self {
        Phases {
            phase: Phase::Running,
            settings,
            reason: None,
            stop_started: None,
            delay: Duration::ZERO,
            main: None,
            main_waits: None,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    /// A shutdown is under way (or over).
    pub fn is_shutting_down(&self) -> bool {
        matches!(
            self.phase,
            Phase::Hooks { .. } | Phase::Delay { .. } | Phase::Stopping(_) | Phase::KillAll { .. } | Phase::Done
        )
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The phase as `baseinit status` names it.
    pub fn name(&self) -> &'static str {
        match self.phase {
            Phase::Startup { .. } => "booting",
            Phase::Running => "running",
            _ => "stopping",
        }
    }

    /// When the shutdown began.
    pub fn stop_started(&self) -> Option<Instant> {
        self.stop_started
    }

    pub fn main(&self) -> Option<UnitId> {
        self.main
    }

    /// The startup scripts to run, in order.
    pub fn boot(&mut self, scripts: Vec<PathBuf>) {
        self.phase = Phase::Startup {
            pending: scripts.into(),
            current: None,
        };
    }

    /// The script or hook `RunScript` or `RunHook` asked for is unit `id`.
    pub fn started(&mut self, id: UnitId) {
        if let Phase::Startup { current, .. } | Phase::Hooks { current, .. } = &mut self.phase {
            *current = Some(id);
        }
    }

    /// The main command is unit `id`; with `--wait-for-services` (`wait`)
    /// it starts once every service is ready (`StartMain`), else now: the
    /// answer says whether to start it now.
    pub fn main_added(&mut self, id: UnitId, wait: Option<Option<Duration>>, now: Instant) -> bool {
        self.main = Some(id);
        self.main_waits = wait.map(|limit| limit.map(|d| now + d));
        self.main_waits.is_none()
    }

    /// The hooks of the stage `ListHooks` asked for.
    pub fn hooks_listed(&mut self, hooks: Vec<PathBuf>) {
        if let Phase::Hooks { pending, .. } = &mut self.phase {
            *pending = Some(hooks.into());
        }
    }

    /// Begins the shutdown for `reason`, unless one is under way already
    /// (then the first reason stands: it decides the exit code).
    pub fn begin_shutdown(&mut self, reason: StopReason, now: Instant) -> bool {
        if self.is_shutting_down() {
            return false;
        }
        self.reason = Some(reason);
        self.stop_started = Some(now);
        // Only a stop from outside lets the services drain: one of the
        // container's own making (its main command, a service, the boot)
        // has nothing to wait for, nor has a boot still running scripts.
        self.delay = match (reason, &self.phase) {
            (StopReason::Signal(_), Phase::Running) => self.settings.shutdown_delay,
            _ => Duration::ZERO,
        };
        // The main command never starts once stopping: no deadline for it.
        self.main_waits = None;
        match reason {
            StopReason::MainExited => info!("main command ended: shutting down"),
            StopReason::BootFailed => error!("boot failed: shutting down"),
            StopReason::Signal(_) | StopReason::ServiceEnded(_) => {}
        }
        self.begin_hooks(HookStage::Pre, now);
        true
    }

    fn begin_hooks(&mut self, stage: HookStage, now: Instant) {
        self.phase = Phase::Hooks {
            stage,
            pending: None,
            current: None,
            until: now + self.settings.hook_timeout,
        };
    }

    /// The next step, given where the units stand. `no_children`: the last
    /// reap found no child process at all (the kill-all is over).
    pub fn next(&mut self, units: &Units, no_children: bool, now: Instant) -> Step {
        loop {
            let step = match &mut self.phase {
                Phase::Startup { pending, current } => {
                    if let Some(id) = *current {
                        let unit = &units[id];
                        if !unit.life.is_down() {
                            return Step::Wait;
                        }
                        *current = None;
                        let status = unit.life.last_exit().and_then(|e| e.status);
                        if status != Some(ExitStatus::Exited(0)) || unit.life.timed_out() {
                            let how = match status {
                                _ if unit.life.timed_out() => "ran past --startup-timeout".to_owned(),
                                Some(status) => format!("failed with {status}"),
                                None => "could not be started".to_owned(),
                            };
                            error!("{} {how}: boot aborted", unit.label);
                            self.begin_shutdown(StopReason::BootFailed, now);
                            continue;
                        }
                        return Step::ReloadEnv;
                    }
                    match pending.pop_front() {
                        Some(script) => Step::RunScript(script),
                        None => {
                            self.phase = Phase::Running;
                            Step::StartServices
                        }
                    }
                }
                Phase::Running => match self.main_step(units, now) {
                    Some(step) => step,
                    None => continue,
                },
                Phase::Hooks {
                    stage,
                    pending,
                    current,
                    until,
                } => {
                    let Some(pending) = pending else {
                        return Step::ListHooks(*stage);
                    };
                    if let Some(id) = *current {
                        let unit = &units[id];
                        if !unit.life.is_down() {
                            return Step::Wait;
                        }
                        *current = None;
                        match unit.life.last_exit().and_then(|e| e.status) {
                            Some(status) if status.success() => {}
                            Some(status) => warn!("{} failed with {status}; the shutdown goes on", unit.label),
                            None => warn!("{} could not be started; the shutdown goes on", unit.label),
                        }
                    }
                    if now >= *until {
                        if !pending.is_empty() {
                            warn!("shutdown hooks ran out of time: skipping {} more", pending.len());
                        }
                        pending.clear();
                    }
                    match (pending.pop_front(), *stage) {
                        (Some(hook), _) => Step::RunHook(hook),
                        (None, HookStage::Pre) if !self.delay.is_zero() => {
                            info!(
                                "shutdown delay: the services keep running for {} ms (a second SIGTERM ends it)",
                                self.delay.as_millis()
                            );
                            self.phase = Phase::Delay {
                                until: now + self.delay,
                            };
                            continue;
                        }
                        (None, HookStage::Pre) => self.begin_stop(units, now),
                        (None, HookStage::Post) => match self.settings.kill_all {
                            KillAll::Off => {
                                self.phase = Phase::Done;
                                Step::Wait
                            }
                            _ => {
                                self.phase = Phase::KillAll {
                                    signal: Signal::SIGTERM,
                                    until: now + self.settings.kill_all_grace,
                                };
                                Step::KillAll(Signal::SIGTERM)
                            }
                        },
                    }
                }
                Phase::Delay { until } => {
                    if now < *until {
                        return Step::Wait;
                    }
                    self.begin_stop(units, now)
                }
                Phase::Stopping(plan) => {
                    let running: Vec<&str> = units
                        .live()
                        .filter(|(_, u)| !u.life.is_down())
                        .map(|(_, u)| u.label.as_str())
                        .collect();
                    if !running.is_empty() {
                        if now < plan.services_by {
                            return Step::Wait;
                        }
                        warn!("giving up on stopping {}: moving on", running.join(", "));
                    }
                    info!("all units stopped in {} ms", (now - plan.started).as_millis());
                    self.begin_hooks(HookStage::Post, now);
                    continue;
                }
                Phase::KillAll { .. } => {
                    if no_children {
                        debug!("no process left");
                        self.phase = Phase::Done;
                    }
                    Step::Wait
                }
                Phase::Done => Step::Wait,
            };
            return step;
        }
    }

    /// While running: whether the main command starts (`--wait-for-services`)
    /// or its end begins the shutdown (None: the phase changed, ask again).
    fn main_step(&mut self, units: &Units, now: Instant) -> Option<Step> {
        if let Some(deadline) = self.main_waits {
            if self.main.is_none() {
                self.main_waits = None;
                return Some(Step::Wait);
            }
            let not_ready = not_ready(units);
            if not_ready.is_empty() {
                self.main_waits = None;
                info!("every service is ready: starting the main command");
                return Some(Step::StartMain);
            }
            if deadline.is_some_and(|d| now >= d) {
                self.main_waits = None;
                error!(
                    "--wait-for-services: not ready in time: {}; not starting the main command",
                    not_ready.join(", ")
                );
                self.begin_shutdown(StopReason::BootFailed, now);
                return None;
            }
            return Some(Step::Wait);
        }
        if let Some(main) = self.main
            && units[main].life.is_down()
        {
            self.begin_shutdown(StopReason::MainExited, now);
            return None;
        }
        Some(Step::Wait)
    }

    /// The services' stop begins.
    fn begin_stop(&mut self, units: &Units, now: Instant) -> Step {
        let plan = StopPlan {
            shutdown_delay: self.delay,
            ..self.stop_plan(units, now)
        };
        debug!("stop plan: at most {} ms", plan.worst_case().as_millis());
        self.phase = Phase::Stopping(plan);
        Step::StopUnits
    }

    /// A second stop signal: the shutdown delay ends now, or, while the
    /// pre-shutdown hooks run, will not be waited. Whether there was one.
    pub fn cut_delay(&mut self, now: Instant) -> bool {
        let owed = std::mem::take(&mut self.delay);
        match &mut self.phase {
            Phase::Delay { until } => {
                *until = now.min(*until);
                true
            }
            Phase::Hooks {
                stage: HookStage::Pre, ..
            } => !owed.is_zero(),
            _ => false,
        }
    }

    /// How the stop of the units still up unfolds: each level of `after`
    /// gets the slowest service's time, loggers stop after their services.
    fn stop_plan(&self, units: &Units, now: Instant) -> StopPlan {
        let running = units.live().filter(|(_, u)| !u.life.is_down());
        StopPlan::new(
            now,
            running.map(|(_, u)| (u.life.policy(), u.kind == Kind::Logger)),
            order::stop_levels(units),
            self.settings.kill_all,
            self.settings.kill_all_grace,
            self.settings.hook_timeout,
        )
    }

    /// A deadline of the phase passed: what to do about it.
    pub fn on_deadline(&mut self, units: &Units, now: Instant) -> Option<Expired> {
        match self.phase {
            Phase::Hooks {
                current: Some(hook),
                until,
                ..
            } if now >= until && !units[hook].life.wants_down() => {
                warn!(
                    "{}: still running at the end of the hook budget: stopping it",
                    units[hook].label
                );
                Some(Expired::StopHook(hook))
            }
            Phase::KillAll { signal, until } if now >= until => {
                if signal == Signal::SIGTERM {
                    info!(
                        "processes left {} ms after SIGTERM: sending SIGKILL to all",
                        self.settings.kill_all_grace.as_millis()
                    );
                    self.phase = Phase::KillAll {
                        signal: Signal::SIGKILL,
                        until: now + KILL_WAIT,
                    };
                    Some(Expired::KillAll(Signal::SIGKILL))
                } else {
                    warn!("processes survived SIGKILL (uninterruptible sleep?): exiting anyway");
                    self.phase = Phase::Done;
                    None
                }
            }
            _ => None,
        }
    }

    /// When the phase next needs a wake-up.
    pub fn deadline(&self, units: &Units) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Stopping(plan) => Some(plan.services_by),
            Phase::Delay { until } | Phase::KillAll { until, .. } => Some(*until),
            // Past the budget with the hook already told to stop, only its
            // own deadlines matter.
            Phase::Hooks { until, current, .. } => match current {
                Some(hook) if units[*hook].life.wants_down() => None,
                _ => Some(*until),
            },
            _ => None,
        };
        phase.into_iter().chain(self.main_waits.flatten()).min()
    }

    /// The signal the kill-all sends now, if it is under way (grandchildren
    /// re-parented to a subreaper get it as they appear).
    pub fn kill_all_signal(&self) -> Option<Signal> {
        match self.phase {
            Phase::KillAll { signal, .. } => Some(signal),
            _ => None,
        }
    }

    /// What the run comes to, for the exit code.
    pub fn outcome(&self, units: &Units) -> Outcome {
        match self.reason {
            Some(StopReason::BootFailed) => Outcome::BootFailed,
            Some(StopReason::ServiceEnded(id)) => {
                let unit = &units[id];
                match (unit.life.last_exit().and_then(|e| e.status), unit.spawn_failure) {
                    (Some(status), _) => Outcome::ServiceEnded(status),
                    (None, Some(failure)) => Outcome::MainCommandFailed(failure),
                    (None, None) => Outcome::BootFailed,
                }
            }
            Some(StopReason::MainExited | StopReason::Signal(_)) | None => {
                let Some(main) = self.main.map(|m| &units[m]) else {
                    return Outcome::Stopped;
                };
                if let Some(failure) = main.spawn_failure {
                    return Outcome::MainCommandFailed(failure);
                }
                match main.life.last_exit().and_then(|e| e.status) {
                    Some(status) => Outcome::MainCommand(status),
                    None => Outcome::Stopped,
                }
            }
        }
    }
}

/// The services and loggers that should be up but are not ready yet.
fn not_ready(units: &Units) -> Vec<String> {
    units
        .live()
        .filter(|(_, u)| {
            u.is_supervised()
                && (u.life.expected_up() || u.order.waiting)
                && !(u.probe.ready && u.life.run_pid().is_some())
        })
        .map(|(_, u)| u.name.clone())
        .collect()
}

#[cfg(test)]
mod tests;
